/**
 * `wasmvisor events`, `wasmvisor top` and the SDK's client.events() against the real Worker
 * and a real agent: events arrive live and filtered, a resumed stream replays exactly the
 * missed ones, and `top --once` prints the fleet as it is.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { startControlPlane, ADMIN_TOKEN, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import type { FleetEvent } from "../../src/sdk/index.js";

let cp: ControlPlane;
let agent: AgentProcess;
let digest: string;

beforeAll(async () => {
  cp = await startControlPlane();
  digest = (await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"))).digest;
  agent = await startAgent({ server: cp.url, token: (await cp.admin.createKey("register")).key, args: ["--name", "observed"] });
});
afterAll(async () => {
  await agent?.kill();
  await cp?.stop();
});

const env = () => ({ ...process.env, WASMVISOR_SERVER: cp.url, WASMVISOR_TOKEN: ADMIN_TOKEN });

function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["dist/device-agent/cli.js", ...args], { encoding: "utf8", env: env(), timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, out: stdout, err: stderr });
    });
  });
}

/** Collects events from the SDK until `until` holds. */
async function collect(opts: Parameters<ControlPlane["admin"]["events"]>[0], until: (e: FleetEvent[]) => boolean): Promise<FleetEvent[]> {
  const got: FleetEvent[] = [];
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 45_000);
  try {
    for await (const e of cp.admin.events({ ...opts, signal: stop.signal })) {
      got.push(e);
      if (until(got)) break;
    }
  } finally {
    clearTimeout(timer);
  }
  return got;
}

describe("the event stream from Node", () => {
  it("client.events() follows live, filtered, and resumes with Last-Event-ID replaying exactly the missed events", async () => {
    // the agent came online before this stream opened: the stored window has it
    const online = await collect({ filters: { device: agent.deviceId, kinds: ["device.*"] }, lastEventId: "0" }, (e) => e.some((x) => x.kind === "device.online"));
    expect(online.map((e) => e.kind)).toEqual(["device.registered", "device.online"]);

    // live: a job's states as they happen
    const live = collect({ filters: { device: agent.deviceId, kinds: ["job.*"] } }, (e) => e.some((x) => x.kind === "job.succeeded"));
    await new Promise((r) => setTimeout(r, 500)); // the stream is open before the job starts (a replay would hide a missing live path)
    const job = await cp.admin.submitJob({ device: agent.deviceId, module: digest, function: "fibo", args: [10] });
    const seen = await live;
    // Pushed over the agent's WebSocket, a job is created leased (over long-poll it is queued first). Its
    // RUNNING shows when the agent's `started` ack is applied before its result; a job that ends first goes
    // LEASED -> SUCCEEDED directly (core/lifecycle.ts), so on a fast machine RUNNING may not be there.
    const kinds = seen.map((e) => e.kind).filter((k) => k !== "job.queued");
    expect(kinds.filter((k) => k !== "job.running")).toEqual(["job.leased", "job.succeeded"]);
    expect(kinds.filter((k) => k === "job.running").length).toBeLessThanOrEqual(1);
    expect(kinds.indexOf("job.running")).not.toBe(0);
    expect(seen.at(-1)).toMatchObject({ kind: "job.succeeded", job: job.id, device: agent.deviceId });

    // missed while away: two more jobs; resuming after the last seen id gives exactly their events
    const last = seen.at(-1)!.id;
    const a = await cp.admin.runJob({ device: agent.deviceId, module: digest, function: "fibo", args: [5] }, 30);
    const b = await cp.admin.runJob({ device: agent.deviceId, module: digest, function: "fibo", args: [6] }, 30);
    const stored = await collect({ filters: { device: agent.deviceId, kinds: ["job.*"] }, lastEventId: "0" }, (e) => e.filter((x) => x.kind === "job.succeeded").length === 3);
    const missed = stored.filter((e) => Number(e.id) > Number(last));
    expect(new Set(missed.map((e) => e.job))).toEqual(new Set([a.job.id, b.job.id]));
    const resumed = await collect({ filters: { device: agent.deviceId, kinds: ["job.*"] }, lastEventId: last, follow: false }, () => false);
    expect(resumed).toEqual(missed);
  });

  it("wasmvisor events prints the stored events and follows", async () => {
    const stored = await cli(["events", "--device", agent.deviceId, "--kind", "device.*", "--last-event-id", "0", "--no-follow"]);
    expect(stored.code).toBe(0);
    expect(stored.out).toMatch(/device\.registered\s+.*\n.*device\.online/);
    const json = await cli(["events", "--kind", "job.succeeded", "--tail", "2", "--no-follow", "--json"]);
    const lines = json.out.trim().split("\n").map((l) => JSON.parse(l) as FleetEvent);
    expect(lines).toHaveLength(2);
    expect(lines.every((e) => e.kind === "job.succeeded")).toBe(true);

    // following (from the last id seen, so a slow start misses nothing): a new job's end shows up in the running command's output
    const proc = spawn(process.execPath, ["dist/device-agent/cli.js", "events", "--kind", "job.succeeded", "--last-event-id", lines[1]!.id], { env: env(), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    proc.stdout.on("data", (d) => (out += d));
    const job = await cp.admin.runJob({ device: agent.deviceId, module: digest, function: "fibo", args: [7] }, 30);
    await expect.poll(() => out, { timeout: 30_000 }).toContain(job.job.id);
    expect(out.trim().split("\n")).toHaveLength(1); // exactly the one missed, nothing replayed twice
    proc.kill("SIGINT");
  });

  it("wasmvisor top --once prints one frame of the fleet", async () => {
    const r = await cli(["top", "--once"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^wasmvisor top /);
    expect(r.out).toMatch(/devices 1\s+online 1\s+offline 0\s+jobs queued 0\s+running 0/);
    expect(r.out).toContain(agent.deviceId);
    expect(r.out).toMatch(/RECENT EVENTS\n(.*\n){0,9}.*job\.succeeded/);
    const json = JSON.parse((await cli(["top", "--once", "--json"])).out);
    expect(json).toMatchObject({ devices: { total: 1, online: 1, offline: 0 }, jobs: { queued: 0, running: 0 } });
    expect(json.recent.length).toBe(10);
  });
});
