/**
 * A schedule really runs its job on a real agent (issue 11, item 6): a cron with seconds
 * fires, the agent runs each occurrence's job once, and pause stops it. Event-driven: the
 * test waits for states (with generous timeouts), it does not sleep for the schedule.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { startControlPlane, ADMIN_TOKEN, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import type { ScheduleView } from "../../src/protocol/schedule.js";

let cp: ControlPlane;
let agent: AgentProcess;

beforeAll(async () => {
  cp = await startControlPlane();
  agent = await startAgent({ server: cp.url, token: (await cp.admin.createKey("register")).key, args: ["--name", "schedule-device"] });
});
afterAll(async () => {
  await agent?.kill();
  await cp?.stop();
});

function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["dist/device-agent/cli.js", ...args], { encoding: "utf8", env: { ...process.env, WASMVISOR_SERVER: cp.url, WASMVISOR_TOKEN: ADMIN_TOKEN }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, out: stdout, err: stderr });
    });
  });
}

/** Asks until `until` holds (a state to reach), or fails after `timeoutMs`. */
async function eventually<T>(read: () => Promise<T>, until: (v: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (until(v)) return v;
    if (Date.now() > end) throw new Error(`never reached the expected state: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("a scheduled job on a real agent", () => {
  it("runs each occurrence once (a cron with seconds), and stops when paused", async () => {
    await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"));
    const created = await cli(["schedules", "create", agent.deviceId, "--file", "examples/schedules/fibo-every-10s.json", "--json"]);
    expect(created.code, created.err).toBe(0);
    const schedule = JSON.parse(created.out) as ScheduleView;
    expect(schedule).toMatchObject({ status: "active", timing: { cron: "*/10 * * * * *", timezone: "UTC" } });

    // Two occurrences, two jobs, each run by the agent.
    const first = await eventually(() => cp.admin.getSchedule(agent.deviceId, schedule.id), (s) => s.lastFired?.job != null);
    const second = await eventually(() => cp.admin.getSchedule(agent.deviceId, schedule.id), (s) => s.lastFired?.job != null && s.lastFired.job !== first.lastFired!.job);
    expect(Date.parse(second.lastFired!.scheduledAt)).toBeGreaterThan(Date.parse(first.lastFired!.scheduledAt));
    for (const job of [first.lastFired!.job!, second.lastFired!.job!]) {
      const done = await cp.admin.waitForJob(job, { timeoutSeconds: 60 });
      expect(done).toMatchObject({ state: "SUCCEEDED", attempts: 1, result: { value: 233 } });
    }

    const paused = await cli(["schedules", "pause", agent.deviceId, schedule.id, "--json"]);
    expect(JSON.parse(paused.out)).toMatchObject({ status: "paused", nextAt: null });
    const last = (await cp.admin.getSchedule(agent.deviceId, schedule.id)).lastFired;
    // Occurrences keep passing while paused: none fires. Wait for the device's queue to be empty and for a few of them to pass.
    const pausedAt = Date.now();
    await eventually(() => cp.admin.getDevice(agent.deviceId), (d) => (d.queue?.queued ?? 0) === 0 && (d.queue?.running ?? 0) === 0 && Date.now() - pausedAt > 10_500);
    expect((await cp.admin.getSchedule(agent.deviceId, schedule.id)).lastFired).toEqual(last);

    const listed = await cli(["schedules", "ls", agent.deviceId]);
    expect(listed.out).toMatch(new RegExp(`${schedule.id}\\s+fibo every 10 seconds\\s+paused`));
    expect((await cli(["schedules", "rm", agent.deviceId, schedule.id, "-q"])).out.trim()).toBe(schedule.id);
    expect(await cp.admin.listSchedules(agent.deviceId)).toEqual([]);
  }, 180_000);

  it("the CLI refuses a bad expression with the problem's words and exit code", async () => {
    const r = await cli(["schedules", "create", agent.deviceId, "--cron", "61 * * * *", "0326de675c193a5ac2d1e6c76500bd79abf90029fcb7fa82750905eb5e7bb805", "fibo", "3"]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("minute");
  });

  it("keeps firing after the control plane restarts (same state and port, no request needed); each job it made runs once", async () => {
    const schedule = await cp.admin.createSchedule(agent.deviceId, {
      name: "through a restart",
      timing: { cron: "*/10 * * * * *" },
      missed: "catch-up-once",
      target: { kind: "job", submission: { module: "0326de675c193a5ac2d1e6c76500bd79abf90029fcb7fa82750905eb5e7bb805", function: "fibo", args: [10] } },
    });
    const before = await eventually(() => cp.admin.getSchedule(agent.deviceId, schedule.id), (s) => s.lastFired?.job != null);

    // The control plane goes away and comes back on the same port with the same state.
    const { persistDir } = cp;
    const port = Number(new URL(cp.url).port);
    await cp.stop();
    const downAt = Date.now();
    cp = await startControlPlane({ persistDir, port });

    // The object's alarm, persisted with its state, fires again after the restart by itself.
    const after = await eventually(() => cp.admin.getSchedule(agent.deviceId, schedule.id), (s) => s.lastFired !== null && Date.parse(s.lastFired.scheduledAt) > downAt);
    expect(after.lastFired!.job).not.toBe(before.lastFired!.job);
    await cp.admin.pauseSchedule(agent.deviceId, schedule.id);

    // Every job the schedule made ran once, and no two share an occurrence (one job per scheduled instant).
    const made = (await cp.admin.listJobs({ device: agent.deviceId, limit: 500 })).jobs.filter((j) => j.createdAt >= schedule.createdAt);
    expect(made.length).toBeGreaterThanOrEqual(2);
    for (const j of made) {
      const done = await cp.admin.waitForJob(j.id, { timeoutSeconds: 60 });
      expect(done).toMatchObject({ state: "SUCCEEDED", attempts: 1, result: { value: 89 } }); // fibo(10)
    }
    expect(new Set(made.map((j) => j.id)).size).toBe(made.length);
    await cp.admin.removeSchedule(agent.deviceId, schedule.id);
  }, 180_000);
});
