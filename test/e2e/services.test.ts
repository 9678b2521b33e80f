/**
 * Services with real agents (dist/), real control planes and Wasm built from WAT:
 * a counter suspended (frozen: no progress, no CPU) and resumed (continues where it
 * stopped); a crashing module restarted with growing delays until CRASHED, then re-armed
 * (by a reset, and by its cool-off); kill and remove; a pending start canceled; an agent
 * SIGKILLed while a service runs (the service keeps running and the restarted agent
 * adopts it); restarts that go on while the control plane cannot be reached; two agents
 * on one machine with their own data dirs.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { ADMIN_TOKEN, startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { compileWat, WAT } from "../helpers/wat.js";
import type { ServiceView } from "../../src/protocol/service.js";
import { until } from "../helpers/until.js";

let cp: ControlPlane;
let register: string;
let counter: string;
let crasher: string;
const dataDirs: string[] = [];
const cleanup: (() => Promise<unknown>)[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The service processes the agents left behind (they outlive agents by design): ended at the end of each test. */
function killServiceProcesses() {
  for (const dir of dataDirs) {
    const root = join(dir, "services");
    if (!existsSync(root)) continue;
    for (const name of readdirSync(root)) {
      try {
        const rec = JSON.parse(readFileSync(join(root, name, "state.json"), "utf8")) as { pid: number | null };
        if (rec.pid) process.kill(-rec.pid, "SIGKILL");
      } catch {
        /* gone already */
      }
    }
  }
}

beforeAll(async () => {
  cp = await startControlPlane();
  register = (await cp.admin.createKey("register")).key;
  counter = (await cp.admin.uploadModule(await compileWat(WAT.countService))).digest;
  crasher = (await cp.admin.uploadModule(await compileWat(WAT.crasher))).digest;
}, 60_000);

afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
  killServiceProcesses();
});

afterAll(async () => {
  killServiceProcesses();
  await cp?.stop();
});

async function agent(opts: { server?: string; dataDir?: string } = {}): Promise<AgentProcess> {
  const a = await startAgent({ server: opts.server ?? cp.url, token: register, ...(opts.dataDir ? { dataDir: opts.dataDir } : {}) });
  if (!dataDirs.includes(a.dataDir)) dataDirs.push(a.dataDir);
  cleanup.push(() => a.kill("SIGKILL"));
  return a;
}


const statusIs = (device: string, name: string, ...statuses: ServiceView["status"][]) =>
  until(`${name} ${statuses.join("/")}`, async () => {
    const s = await cp.admin.getService(device, name);
    return statuses.includes(s.status) ? s : null;
  });

/** The counts the service printed, from its output file on the device (what the agent reads). */
function counts(dataDir: string, name: string): number[] {
  const file = join(dataDir, "services", name, "output.log");
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => Number((JSON.parse(l) as { line: string }).line.replace("count ", "")));
}

/** user + system CPU ticks and the state of a process, from /proc. */
function procStat(pid: number): { ticks: number; state: string } {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: f[0]!, ticks: Number(f[11]) + Number(f[12]) };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return procStat(pid).state !== "Z";
  } catch {
    return false;
  }
};

describe("services on real agents", () => {
  it("suspend freezes a counter (no progress, no CPU); resume continues where it stopped", async () => {
    const a = await agent();
    await cp.admin.createService(a.deviceId, { name: "count", module: counter });
    const running = await statusIs(a.deviceId, "count", "RUNNING");
    const pid = running.pid!;
    await until("counting", async () => counts(a.dataDir, "count").length >= 5);

    await cp.admin.serviceAction(a.deviceId, "count", "suspend");
    await statusIs(a.deviceId, "count", "STOPPED");
    await until("frozen", async () => procStat(pid).state === "T");
    await sleep(300); // a line being written as the signal came is on disk by now
    const before = counts(a.dataDir, "count");
    const cpuBefore = procStat(pid).ticks;
    await sleep(3_000);
    expect(counts(a.dataDir, "count")).toEqual(before);
    expect(procStat(pid).ticks).toBe(cpuBefore);
    // The heartbeat says so too: no CPU while STOPPED.
    await until("cpuPercent 0 reported", async () => {
      const s = await cp.admin.getService(a.deviceId, "count");
      return s.status === "STOPPED" && s.cpuPercent === 0 && s.rssBytes > 0;
    });

    await cp.admin.serviceAction(a.deviceId, "count", "resume");
    const resumed = await statusIs(a.deviceId, "count", "RUNNING");
    expect(resumed.pid).toBe(pid); // the same process, continued
    await until("counting again", async () => counts(a.dataDir, "count").length >= before.length + 5);
    const after = counts(a.dataDir, "count");
    expect(after.slice(0, before.length)).toEqual(before);
    expect(after).toEqual(after.map((_, i) => i)); // no gap, no repeat: it continued where it stopped
    // The control plane holds the ring of its lines.
    await until("lines shipped", async () => (await cp.admin.serviceLogs(a.deviceId, "count")).some((l) => l.line === `count ${before.length + 2}`));
    const device = await cp.admin.getDevice(a.deviceId);
    expect(device.services).toContainEqual(expect.objectContaining({ name: "count", status: "RUNNING" }));
  });

  it("a crashing service is restarted with growing delays until CRASHED; a reset and a cool-off re-arm it; kill and remove", async () => {
    const a = await agent();
    const restart = { mode: "on-failure", maxRestarts: 3, windowMs: 60_000, initialDelayMs: 200, maxDelayMs: 800, resetAfterMs: 30_000, rearmAfterMs: null } as const;
    await cp.admin.createService(a.deviceId, { name: "crash", module: crasher, restart });
    const crashed = await statusIs(a.deviceId, "crash", "CRASHED");
    expect(crashed).toMatchObject({ exitCode: 3, restarts: 3, lastError: "the module exited with code 3" });
    expect(crashed.reason).toMatch(/restart budget spent \(3 of 3 restarts within 60s\)/);
    const delays = a.logs.filter((l) => l.msg === "service ended; restarting" && l.service === "crash").map((l) => l.delayMs);
    expect(delays).toEqual([200, 400, 800]);
    expect(a.logs.filter((l) => l.msg === "service started" && l.service === "crash")).toHaveLength(4);

    // A user's reset re-arms the budget: it runs (and crashes) again.
    await cp.admin.serviceAction(a.deviceId, "crash", "reset");
    await a.waitForLog((l) => l.msg === "service restart budget reset" && l.service === "crash");
    await until("started after the reset", async () => a.logs.filter((l) => l.msg === "service started" && l.service === "crash").length >= 5);

    // A budget that re-arms by itself after its cool-off.
    await cp.admin.createService(a.deviceId, { name: "rearm", module: crasher, restart: { ...restart, maxRestarts: 1, initialDelayMs: 100, maxDelayMs: 100, rearmAfterMs: 1_000 } });
    await a.waitForLog((l) => l.msg === "service crashed: restart budget spent" && l.service === "rearm");
    await a.waitForLog((l) => l.msg === "service restart budget re-armed" && l.service === "rearm");

    // Kill stops it for good; remove deletes it on the device, whatever its status.
    const killed = await cp.admin.serviceAction(a.deviceId, "rearm", "kill");
    expect(killed.desired).toBe("killed");
    await statusIs(a.deviceId, "rearm", "KILLED");
    const startsAtKill = a.logs.filter((l) => l.msg === "service started" && l.service === "rearm").length;
    await sleep(1_500);
    expect(a.logs.filter((l) => l.msg === "service started" && l.service === "rearm")).toHaveLength(startsAtKill);
    expect(await cp.admin.removeServices(a.deviceId, ["rearm", "crash"])).toEqual({ removed: ["rearm", "crash"], absent: [] });
    await until("removed on the device", async () => !existsSync(join(a.dataDir, "services", "rearm")) && !existsSync(join(a.dataDir, "services", "crash")));
    expect(await cp.admin.listServices(a.deviceId)).toEqual([]);
  });

  it("a pending start is canceled and never runs; a short one starts on time", async () => {
    const a = await agent();
    const pending = await cp.admin.createService(a.deviceId, { name: "later", module: counter, startAfterMs: 3_600_000 });
    expect(pending.status).toBe("PENDING");
    const canceled = await cp.admin.serviceAction(a.deviceId, "later", "cancel");
    expect(canceled).toMatchObject({ status: "KILLED", reason: "its pending start was canceled" });
    const soon = await cp.admin.createService(a.deviceId, { name: "soon", module: counter, startAfterMs: 1_500 });
    expect(soon.status).toBe("PENDING");
    const started = await statusIs(a.deviceId, "soon", "RUNNING");
    expect(Date.parse(started.startedAt!)).toBeGreaterThanOrEqual(Date.parse(soon.createdAt) + 1_500);
    expect(existsSync(join(a.dataDir, "services", "later"))).toBe(false);
    expect((await cp.admin.getService(a.deviceId, "later")).status).toBe("KILLED");
  });

  it("an agent SIGKILLed while a service runs: the service keeps running, and the restarted agent adopts it", async () => {
    const first = await agent();
    await cp.admin.createService(first.deviceId, { name: "count", module: counter });
    const pid = (await statusIs(first.deviceId, "count", "RUNNING")).pid!;
    await first.kill("SIGKILL");
    const n = counts(first.dataDir, "count").length;
    await until("still counting without its agent", async () => alive(pid) && counts(first.dataDir, "count").length >= n + 5);

    const second = await agent({ dataDir: first.dataDir });
    expect(second.deviceId).toBe(first.deviceId);
    const adopted = await second.waitForLog((l) => l.msg === "service adopted" && l.service === "count");
    expect(adopted.pid).toBe(pid);
    expect(second.logs.filter((l) => l.msg === "service started" && l.service === "count")).toHaveLength(0);
    await until("reported adopted", async () => {
      const s = await cp.admin.getService(first.deviceId, "count");
      return s.status === "RUNNING" && s.pid === pid && /adopted/.test(s.reason);
    });
    // The adopted process is supervised like its own: suspend freezes it, kill ends it.
    await cp.admin.serviceAction(first.deviceId, "count", "suspend");
    await until("frozen", async () => procStat(pid).state === "T");
    await cp.admin.serviceAction(first.deviceId, "count", "kill");
    await statusIs(first.deviceId, "count", "KILLED");
    await until("ended", async () => !alive(pid));
  });

  it("keeps restarting a crashing service while the control plane cannot be reached", async () => {
    const proxy = new TcpProxy(() => ({ host: "127.0.0.1", port: Number(new URL(cp.url).port) }));
    await proxy.listen();
    const port = proxy.port;
    cleanup.push(() => proxy.close());
    const a = await agent({ server: proxy.url });
    await cp.admin.createService(a.deviceId, { name: "flaky", module: crasher, restart: { mode: "on-failure", maxRestarts: 1000, initialDelayMs: 100, maxDelayMs: 200 } });
    await statusIs(a.deviceId, "flaky", "RUNNING", "BACKOFF");
    await proxy.close(); // connections reset, new ones refused
    const startsAtCut = a.logs.filter((l) => l.msg === "service started" && l.service === "flaky").length;
    await a.waitForLog((l) => l.msg === "heartbeat failed");
    await until("restarted while cut off", async () => a.logs.filter((l) => l.msg === "service started" && l.service === "flaky").length >= startsAtCut + 3, 30_000);
    await proxy.listen(port);
    await until("the control plane hears of the restarts", async () => (await cp.admin.getService(a.deviceId, "flaky")).restarts >= 3);
  });

  it("two agents on one machine, each with its own data dir and identity, run services of the same name apart", async () => {
    const [a, b] = await Promise.all([agent(), agent()]);
    expect(a.deviceId).not.toBe(b.deviceId);
    await cp.admin.createService(a.deviceId, { name: "count", module: counter });
    await cp.admin.createService(b.deviceId, { name: "count", module: counter });
    const [sa, sb] = await Promise.all([statusIs(a.deviceId, "count", "RUNNING"), statusIs(b.deviceId, "count", "RUNNING")]);
    expect(sa.pid).not.toBe(sb.pid);
    await cp.admin.serviceAction(a.deviceId, "count", "suspend");
    await statusIs(a.deviceId, "count", "STOPPED");
    expect((await cp.admin.getService(b.deviceId, "count")).status).toBe("RUNNING");
    await until("b keeps counting", async () => counts(b.dataDir, "count").length >= 10);
  });

  it("the CLI: create from examples/services, ls, suspend, status, open, rm (exit codes)", async () => {
    const a = await agent();
    const cli = (args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        execFile(process.execPath, ["dist/device-agent/cli.js", "services", ...args], { encoding: "utf8", env: { ...process.env, WASMVISOR_SERVER: cp.url, WASMVISOR_TOKEN: ADMIN_TOKEN }, timeout: 60_000 }, (error, stdout, stderr) =>
          resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, out: stdout, err: stderr }),
        );
      });
    // examples/wasm/counter.wasm is the countService module: the example's digest is the one uploaded.
    expect(JSON.parse(readFileSync("examples/services/counter.json", "utf8")).module).toBe(counter);
    const made = await cli(["create", a.deviceId, "--spec", "examples/services/counter.json", "--json"]);
    expect(made.code, made.err).toBe(0);
    expect(JSON.parse(made.out)).toMatchObject({ name: "counter", spec: { args: ["--every", "100ms"], env: { MODE: "demo" } } });
    expect((await cli(["create", a.deviceId, "--spec", "examples/services/counter.json"])).code).toBe(3); // 409: exists
    await statusIs(a.deviceId, "counter", "RUNNING");
    const ls = await cli(["ls", a.deviceId]);
    expect(ls.out).toMatch(/^NAME\s+STATUS\s+DESIRED\s+RESTARTS/m);
    expect(ls.out).toMatch(/counter\s+RUNNING\s+running\s+0\/5/);
    expect((await cli(["suspend", a.deviceId, "counter", "-q"])).out.trim()).toBe("counter");
    await statusIs(a.deviceId, "counter", "STOPPED");
    const status = JSON.parse((await cli(["status", a.deviceId, "counter", "--json"])).out);
    expect(status).toMatchObject({ status: "STOPPED", desired: "suspended" });
    const open = await cli(["open", a.deviceId, "counter", "--no-follow"]);
    expect(open.code).toBe(0);
    expect(open.out).toMatch(/counter\s+STOPPED/);
    expect(open.out).toMatch(/OUT count 0/);
    const rm = await cli(["rm", a.deviceId, "counter", "ghost"]);
    expect(rm.out).toMatch(/removed: counter\nnot found: ghost/);
    expect(rm.code).toBe(3);
    expect((await cli(["status", a.deviceId, "counter"])).code).toBe(3);
  });
});
