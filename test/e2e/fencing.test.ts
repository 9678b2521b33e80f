/**
 * Fencing: two agent processes holding one device's credential (a cloned SD card, a restarted
 * container whose old copy still runs). The second opens a newer session (a higher epoch) and takes
 * the device over; whatever the first says from then on is refused, and it stops itself instead of
 * fighting back by reconnecting.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { compileWat, WAT } from "../helpers/wat.js";
import type { WasmvisorClient } from "../../src/sdk/index.js";
import { cleanupAfterEach } from "../helpers/cleanup.js";

const cleanup = cleanupAfterEach();

async function controlPlane() {
  const cp = await startControlPlane();
  cleanup.push(() => cp.stop());
  return cp;
}

/** A second data dir holding the first agent's credential: the same device identity, another process. */
function cloneIdentity(first: AgentProcess): string {
  const dir = mkdtempSync(join(tmpdir(), "wv-agent-clone-"));
  copyFileSync(join(first.dataDir, "credential.json"), join(dir, "credential.json"));
  return dir;
}

const exitOf = (a: AgentProcess) => new Promise<number | null>((r) => (a.proc.exitCode !== null ? r(a.proc.exitCode) : a.proc.on("exit", (code) => r(code))));

async function deviceSession(admin: WasmvisorClient, deviceId: string) {
  const view = (await admin.getDevice(deviceId)) as { session?: { epoch: number; openedAt: string; refused: number } | null };
  return view.session;
}

describe.each(["ws", "poll"] as const)("a second agent with the same credential (%s transport)", (transport) => {
  it("takes the device over with a higher epoch; the first stops itself (exit code 3) and does not come back", async () => {
    const cp = await controlPlane();
    const args = ["--transport", transport];
    const first = await startAgent({ server: cp.url, token: (await cp.admin.createKey("register")).key, args });
    cleanup.push(() => first.kill("SIGKILL"));
    const firstSession = await first.waitForLog((l) => l.msg === "session opened");
    const firstEpoch = firstSession.epoch as number;

    const second = await startAgent({ server: cp.url, dataDir: cloneIdentity(first), args });
    cleanup.push(() => second.kill("SIGKILL"));
    const secondSession = await second.waitForLog((l) => l.msg === "session opened");
    const takeoverAt = Date.now();
    expect(secondSession.epoch as number).toBeGreaterThan(firstEpoch);

    const code = await exitOf(first);
    const stoppedAfterMs = Date.now() - takeoverAt;
    expect(code).toBe(3);
    const fenced = first.logs.find((l) => l.msg === "another agent process took this device over; stopping");
    expect(fenced).toMatchObject({ level: "error", epoch: firstEpoch });
    // It did not reconnect after it learned it was fenced.
    const fencedAt = first.logs.indexOf(fenced!);
    expect(first.logs.slice(fencedAt).some((l) => l.msg === "push transport connected" || l.msg === "session opened")).toBe(false);
    // From the new session's opening to the stale agent's stop, by the two processes' own log clocks (one machine).
    const stoppedActingMs = Date.parse(fenced!.time as string) - Date.parse(secondSession.time as string);
    console.log(`[fencing ${transport}] epochs ${firstEpoch} -> ${secondSession.epoch as number}; the stale agent stopped acting ${stoppedActingMs} ms after the new session opened, and exited ${code} ${stoppedAfterMs} ms after the test saw the takeover`);

    // The device works, through the second agent only.
    const hello = (await cp.admin.uploadModule(await compileWat(WAT.hello))).digest;
    const jobs = await Promise.all([1, 2, 3].map(() => cp.admin.submitJob({ device: first.deviceId, module: hello, function: "greet", args: [] })));
    for (const job of jobs) expect(await cp.admin.waitForJob(job.id, { timeoutSeconds: 30 })).toMatchObject({ state: "SUCCEEDED", attempts: 1 });
    for (const job of jobs) {
      expect(second.logs.some((l) => l.msg === "job finished" && l.jobId === job.id)).toBe(true);
      expect(first.logs.some((l) => l.jobId === job.id)).toBe(false);
    }
    expect(await deviceSession(cp.admin, first.deviceId)).toMatchObject({ epoch: secondSession.epoch });
  }, 180_000);
});

describe("a stale agent cut off by a partition while it ran a job", () => {
  it("has its result refused (409) after the takeover: none accepted; the job is run again by the new session", async () => {
    const cp = await controlPlane();
    const proxy = await TcpProxy.inFrontOf(cp.url);
    cleanup.push(() => proxy.close());
    const sleepModule = (await cp.admin.uploadModule(await compileWat(WAT.sleep))).digest;

    const first = await startAgent({ server: proxy.url, token: (await cp.admin.createKey("register")).key, args: ["--transport", "poll"] });
    cleanup.push(() => first.kill("SIGKILL"));
    await first.waitForLog((l) => l.msg === "session opened");
    // A long job timeout: the lease outlives the partition, so without fencing the stale result would be taken.
    const job = await cp.admin.submitJob({ device: first.deviceId, module: sleepModule, function: "sleep_ms", args: [4_000], timeoutMs: 120_000, maxAttempts: 3 });
    for (let i = 0; i < 300 && (await cp.admin.getJob(job.id)).state !== "RUNNING"; i++) await new Promise((r) => setTimeout(r, 50));
    expect((await cp.admin.getJob(job.id)).state).toBe("RUNNING");

    proxy.blackhole(true); // the first agent can no longer be heard, and hears nothing
    const second = await startAgent({ server: cp.url, dataDir: cloneIdentity(first), args: ["--transport", "poll"] });
    cleanup.push(() => second.kill("SIGKILL"));
    await second.waitForLog((l) => l.msg === "session opened");
    const takeoverAt = Date.now();

    // The first agent finishes its run while cut off; its result waits to be sent.
    await first.waitForLog((l) => l.msg === "job finished" && l.jobId === job.id, 30_000);
    const done = await cp.admin.waitForJob(job.id, { timeoutSeconds: 60 });
    expect(done).toMatchObject({ state: "SUCCEEDED", attempts: 2, result: { value: 4_000 } });
    await second.waitForLog((l) => l.msg === "job finished" && l.jobId === job.id);

    proxy.blackhole(false); // the link heals: what the first agent sent meanwhile arrives now
    const healedAt = Date.now();
    const code = await exitOf(first);
    const stoppedAfterMs = Date.now() - takeoverAt;
    expect(code).toBe(3);
    const fenced = first.logs.find((l) => l.msg === "another agent process took this device over; stopping");
    expect(fenced).toBeDefined();
    const afterHealMs = Date.parse(fenced!.time as string) - healedAt;
    const session = await deviceSession(cp.admin, first.deviceId);
    expect(session?.refused).toBeGreaterThan(0);
    // Still the second agent's run: the first's result changed nothing.
    expect(await cp.admin.getJob(job.id)).toMatchObject({ state: "SUCCEEDED", attempts: 2 });
    const accepted = first.logs.filter((l) => l.msg === "results delivered").length;
    console.log(`[fencing partition] results accepted from the stale agent after the takeover: ${accepted}; requests refused from stale sessions: ${session?.refused}; the stale agent exited ${code} ${stoppedAfterMs} ms after the takeover (the link was cut until then), and stopped acting ${afterHealMs} ms after the link healed`);
    expect(accepted).toBe(0);
  }, 180_000);
});
