/** Nothing accepted is lost: agents killed mid-job, control planes restarted, devices going silent. */
import { afterEach, describe, expect, it } from "vitest";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { compileWat, WAT } from "../helpers/wat.js";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { until } from "../helpers/until.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

async function controlPlane(persistDir?: string, port?: number) {
  const cp = await startControlPlane({ ...(persistDir ? { persistDir } : {}), ...(port ? { port } : {}) });
  cleanup.push(() => cp.stop());
  return cp;
}

async function agentFor(cp: ControlPlane, opts: { dataDir?: string } = {}) {
  const token = opts.dataDir ? undefined : (await cp.admin.createKey("register")).key;
  const a = await startAgent({ server: cp.url, ...(token ? { token } : {}), ...opts });
  cleanup.push(() => a.kill("SIGKILL"));
  return a;
}


describe("agent crashes", () => {
  it("redelivers a job whose agent was SIGKILLed while holding its lease; it completes exactly once", async () => {
    const cp = await controlPlane();
    const first: AgentProcess = await agentFor(cp);
    const sleep = (await cp.admin.uploadModule(await compileWat(WAT.sleep))).digest;
    const job = await cp.admin.submitJob({ device: first.deviceId, module: sleep, function: "sleep_ms", args: [1500], timeoutMs: 4000, maxAttempts: 3 });
    // Wait until the control plane knows the job started (the agent acknowledged it), then kill the agent hard.
    await until("the job to run", async () => (await cp.admin.getJob(job.id)).state === "RUNNING");
    await first.kill("SIGKILL");
    expect((await cp.admin.getJob(job.id)).state).toBe("RUNNING");

    const second = await agentFor(cp, { dataDir: first.dataDir });
    expect(second.deviceId).toBe(first.deviceId);
    const done = await cp.admin.waitForJob(job.id, { timeoutSeconds: 40 });
    expect(done).toMatchObject({ state: "SUCCEEDED", attempts: 2, result: { value: 1500 } });
    // Exactly once: the restarted agent ran it once, and nothing reopens a finished job.
    const finished = second.logs.filter((l) => l.msg === "job finished" && l.jobId === job.id);
    expect(finished).toHaveLength(1);
    expect((await cp.admin.getJob(job.id)).finishedAt).toBe(done.finishedAt);
  });
});

describe("control plane restarts", () => {
  it("keeps queued jobs across a restart (persisted SQLite state) and runs them afterwards", async () => {
    const cp1 = await startControlPlane();
    const key = (await cp1.admin.createKey("register")).key;
    const a = await startAgent({ server: cp1.url, token: key });
    await a.kill("SIGTERM");
    const fibo = (await cp1.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"))).digest;
    const jobs = [];
    for (const n of [5, 10, 12]) jobs.push(await cp1.admin.submitJob({ device: a.deviceId, module: fibo, function: "fibo", args: [n] }));
    await cp1.stop();

    const cp2 = await controlPlane(cp1.persistDir);
    // The stopped agent's last long poll may have been handed the first job before anyone noticed it was
    // gone (the object is not told): that job is LEASED and comes back when its ack window closes.
    for (const j of jobs) expect(["QUEUED", "LEASED"]).toContain((await cp2.admin.getJob(j.id)).state);
    await agentFor(cp2, { dataDir: a.dataDir });
    const results = await Promise.all(jobs.map((j) => cp2.admin.waitForJob(j.id)));
    expect(results.map((r) => r.result?.value)).toEqual([8, 89, 233]);
  });
});

describe("presence", () => {
  it("shows a device offline once its heartbeats stop, with no request arriving", async () => {
    const cp = await controlPlane();
    const a = await agentFor(cp);
    await until("online", async () => (await cp.admin.getDevice(a.deviceId)).status === "online");
    await a.kill("SIGKILL");
    // HEARTBEAT_TIMEOUT_MS is 3 s here; only the device object's alarm can notice.
    await until("offline", async () => (await cp.admin.listDevices({ status: "offline" })).devices.some((d) => d.id === a.deviceId), 20_000);
    expect((await cp.admin.getDevice(a.deviceId)).status).toBe("offline");
  });

  it("keeps results in the outbox while the control plane is away and delivers them when it returns", async () => {
    const cp1 = await startControlPlane();
    const a = await startAgent({ server: cp1.url, token: (await cp1.admin.createKey("register")).key });
    cleanup.push(() => a.kill("SIGKILL"));
    const sleep = (await cp1.admin.uploadModule(await compileWat(WAT.sleep))).digest;
    const job = await cp1.admin.submitJob({ device: a.deviceId, module: sleep, function: "sleep_ms", args: [1500], timeoutMs: 20_000 });
    await until("the job to run", async () => (await cp1.admin.getJob(job.id)).state === "RUNNING");
    await cp1.stop();
    await a.waitForLog((l) => l.msg === "could not send results; will retry");
    await until("the outbox on disk", async () => existsSync(join(a.dataDir, "outbox.json")));

    // Back on the same address (the agent knows only that one), with the same state.
    const cp2 = await controlPlane(cp1.persistDir, Number(new URL(cp1.url).port));
    const done = await cp2.admin.waitForJob(job.id, { timeoutSeconds: 40 });
    expect(done).toMatchObject({ state: "SUCCEEDED", attempts: 1, result: { value: 1500 } });
    expect(a.logs.filter((l) => l.msg === "job finished" && l.jobId === job.id)).toHaveLength(1);
    await until("the outbox to empty", async () => !existsSync(join(a.dataDir, "outbox.json")));
  });
});
