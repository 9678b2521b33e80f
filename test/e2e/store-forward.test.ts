/**
 * Store and forward, and degraded mode: the link to the control plane is blackholed (connections stay
 * open, no byte moves) while the agent runs jobs it holds; the agent says it is degraded, keeps the
 * results, its health samples and log lines on disk, is SIGKILLed (a power loss), restarts while still
 * cut off, and once the link heals delivers every result exactly once: no job runs twice.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import net from "node:net";
import { ADMIN_TOKEN, startControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { compileWat, WAT } from "../helpers/wat.js";
import { until } from "../helpers/until.js";
import { cleanupAfterEach } from "../helpers/cleanup.js";

const cleanup = cleanupAfterEach();

const savedOutbox = (a: AgentProcess) => {
  const file = join(a.dataDir, "outbox.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { results: { jobId: string }[]; logs: unknown[]; health: unknown[] }) : null;
};

describe("the control plane unreachable while the agent holds work", () => {
  it("keeps results, health and log lines across SIGKILL and delivers every result exactly once after reconnect", async () => {
    const cp = await startControlPlane();
    cleanup.push(() => cp.stop());
    const proxy = await TcpProxy.inFrontOf(cp.url);
    cleanup.push(() => proxy.close());
    const sleepModule = (await cp.admin.uploadModule(await compileWat(WAT.sleep))).digest;
    const args = ["--pool-size", "3"];

    const first = await startAgent({ server: proxy.url, token: (await cp.admin.createKey("register")).key, args });
    cleanup.push(() => first.kill("SIGKILL"));
    await first.waitForLog((l) => l.msg === "push transport connected");
    const jobs = await Promise.all([0, 1, 2].map(() => cp.admin.submitJob({ device: first.deviceId, module: sleepModule, function: "sleep_ms", args: [3_000], timeoutMs: 120_000, maxAttempts: 3 })));
    await until("all three running", async () => (await Promise.all(jobs.map((j) => cp.admin.getJob(j.id)))).every((j) => j.state === "RUNNING"));

    proxy.blackhole(true);
    console.log(`[store-forward] link blackholed at ${new Date().toISOString()}`);
    // Degraded: it says so, and finishes the work it holds.
    await first.waitForLog((l) => l.msg === "control plane unreachable: degraded mode, working from the cached desired state and keeping reports in the outbox", 60_000);
    for (const job of jobs) await first.waitForLog((l) => l.msg === "job finished" && l.jobId === job.id, 60_000);
    const onDisk = await until("three results and some health samples on disk", () => {
      const saved = savedOutbox(first);
      return saved && saved.results.length === 3 && saved.health.length > 0 ? saved : undefined;
    });
    expect(onDisk.results.map((r) => r.jobId).sort()).toEqual(jobs.map((j) => j.id).sort());
    expect(await first.kill("SIGKILL")).toBeNull(); // a power loss: nothing flushed, nothing said

    // Restarted while the control plane is still away (now refusing connections): it restores what it kept and retries.
    const port = proxy.port;
    await proxy.close();
    // Each connection is read up to its request line, then dropped: the link heals only once the agent
    // has tried to open its session (other requests, such as its limits, may come first and be retried).
    let sessionTries = 0;
    const refuser = net.createServer((c) => {
      c.once("data", (d) => {
        if (String(d).startsWith("POST /v1/agent/session ")) sessionTries++;
        c.destroy();
      });
      c.on("error", () => undefined);
    });
    await new Promise<void>((r) => refuser.listen(port, "127.0.0.1", r));
    const restarting = startAgent({ server: `http://127.0.0.1:${port}`, dataDir: first.dataDir, args, startTimeoutMs: 120_000 });
    await until("the restarted agent trying to open its session", () => sessionTries >= 1, 60_000);
    await new Promise((r) => refuser.close(r));
    proxy.blackhole(false);
    await proxy.listen(port); // the link heals
    const second = await restarting;
    cleanup.push(() => second.kill("SIGKILL"));
    expect(second.logs.find((l) => l.msg === "restored unsent results")).toMatchObject({ count: 3 });
    expect(second.logs.some((l) => l.msg === "could not open a session; retrying")).toBe(true);
    expect(second.logs.some((l) => l.msg === "control plane reachable again: leaving degraded mode and reconciling")).toBe(true);

    // Every result delivered, each job ended once, none run again.
    for (const job of jobs) {
      expect(await cp.admin.waitForJob(job.id, { timeoutSeconds: 60 })).toMatchObject({ state: "SUCCEEDED", result: { value: 3_000 } });
      expect(first.logs.filter((l) => l.msg === "job finished" && l.jobId === job.id)).toHaveLength(1);
      expect(second.logs.some((l) => l.msg === "job finished" && l.jobId === job.id)).toBe(false);
    }
    const delivered = second.logs.filter((l) => l.msg === "results delivered").flatMap((l) => l.jobIds as string[]);
    expect(delivered.sort()).toEqual(jobs.map((j) => j.id).sort());
    await until("the outbox file emptied", () => savedOutbox(second) === null);

    // The health samples taken while degraded reached the control plane (as the agent's log lines).
    const lines = await until("the outage's health samples shipped", async () => {
      const res = await fetch(`${cp.url}/v1/devices/${first.deviceId}/logs?limit=500`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      const body = (await res.json()) as { lines: { msg: string; fields?: string }[] };
      const samples = body.lines.filter((l) => l.msg === "health while the control plane was away");
      return samples.length > 0 ? samples : undefined;
    });
    expect(JSON.parse(lines[0]!.fields!)).toMatchObject({ degraded: { reason: expect.any(String) } });
    console.log(`[store-forward] ${onDisk.results.length} results and ${onDisk.health.length} health samples on disk at SIGKILL; delivered after restart: ${delivered.length} results (each once), ${lines.length} health samples`);
  }, 240_000);
});
