/**
 * The agent on a bad network: acks lost on the way, a control plane that is down for a while,
 * a forwarder that accepts connections and closes them at once. None of it may burn a healthy
 * job's attempts, run it twice, keep the agent off the WebSocket, or end the agent.
 */
import { afterEach, describe, expect, it } from "vitest";
import net from "node:net";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import type { AddressInfo } from "node:net";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent } from "../helpers/agent-process.js";
import { startLinkProxy, type AckMessage } from "../helpers/link-proxy.js";
import { compileWat, WAT } from "../helpers/wat.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

async function controlPlane(opts: Parameters<typeof startControlPlane>[0] = {}) {
  const cp = await startControlPlane(opts);
  cleanup.push(() => cp.stop());
  return cp;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const startsIn = (ack: AckMessage) => ack.started.length > 0;

describe.each(["ws", "poll"] as const)("lost acks over the %s transport (ACK_TIMEOUT_MS = 3 s)", (transport) => {
  async function setup(loseAck: (ack: AckMessage) => boolean) {
    const cp = await controlPlane();
    const proxy = await startLinkProxy(cp.url, { loseAck });
    cleanup.push(() => proxy.close());
    const agent = await startAgent({ server: proxy.url, token: (await cp.admin.createKey("register")).key, args: ["--transport", transport] });
    cleanup.push(() => agent.kill("SIGKILL"));
    if (transport === "ws") await agent.waitForLog((l) => l.msg === "push transport connected");
    const sleepModule = (await cp.admin.uploadModule(await compileWat(WAT.sleep))).digest;
    return { cp, proxy, agent, sleepModule };
  }

  it("retries a lost ack: a healthy job longer than the ack window succeeds on its first attempt and runs once", async () => {
    let toLose = 2;
    const { cp, proxy, agent, sleepModule } = await setup((ack) => startsIn(ack) && toLose-- > 0);
    const job = await cp.admin.submitJob({ device: agent.deviceId, module: sleepModule, function: "sleep_ms", args: [6_000], timeoutMs: 20_000, maxAttempts: 3 });
    const done = await cp.admin.waitForJob(job.id, { timeoutSeconds: 40 });
    expect(proxy.lost.filter(startsIn)).toHaveLength(2);
    expect(done).toMatchObject({ state: "SUCCEEDED", attempts: 1, result: { value: 6_000 } });
    expect(agent.logs.filter((l) => l.msg === "job finished" && l.jobId === job.id)).toHaveLength(1);
  });

  it("answers a redelivery of a job in hand with an ack: it still runs once, and succeeds", async () => {
    // Every ack and renewal is lost for 4.5 s: longer than the ack window, so the lease runs out and the job comes back.
    let until = Number.POSITIVE_INFINITY;
    const { cp, agent, sleepModule } = await setup((ack) => {
      if (until === Number.POSITIVE_INFINITY && startsIn(ack)) until = Date.now() + 4_500; // from the job's first ack on
      return Date.now() < until;
    });
    const job = await cp.admin.submitJob({ device: agent.deviceId, module: sleepModule, function: "sleep_ms", args: [8_000], timeoutMs: 20_000, maxAttempts: 3 });
    const done = await cp.admin.waitForJob(job.id, { timeoutSeconds: 40 });
    expect(done).toMatchObject({ state: "SUCCEEDED", result: { value: 8_000 } });
    expect(agent.logs.some((l) => l.msg === "a job already in hand was delivered again; answering with an ack" && l.jobId === job.id)).toBe(true);
    expect(agent.logs.filter((l) => l.msg === "job finished" && l.jobId === job.id)).toHaveLength(1);
    expect(agent.logs.some((l) => l.msg === "stopped a job the control plane no longer leases to us" && l.jobId === job.id)).toBe(false);
  });
});

describe("a control plane that is down for a while", () => {
  it("brings the agent back to the WebSocket promptly, without falling back to long-poll", async () => {
    const cp1 = await startControlPlane();
    const port = Number(new URL(cp1.url).port);
    const agent = await startAgent({ server: cp1.url, token: (await cp1.admin.createKey("register")).key });
    cleanup.push(() => agent.kill("SIGKILL"));
    await agent.waitForLog((l) => l.msg === "push transport connected");
    await cp1.stop();
    // Several refused connections while it is down.
    await agent.waitForLog((l) => l.msg === "WebSocket connection failed" && agent.logs.filter((x) => x.msg === "WebSocket connection failed").length >= 3, 30_000);
    const before = agent.logs.filter((l) => l.msg === "push transport connected").length;
    const cp2 = await controlPlane({ persistDir: cp1.persistDir, port });
    const back = Date.now();
    await agent.waitForLog((l) => l.msg === "push transport connected" && agent.logs.filter((x) => x.msg === "push transport connected").length > before, 15_000);
    expect(Date.now() - back).toBeLessThan(10_000);
    expect(agent.logs.some((l) => l.msg === "WebSocket transport unavailable; using long-poll")).toBe(false);
    const fibo = (await cp2.admin.uploadModule(await compileWat(WAT.math))).digest;
    const job = await cp2.admin.submitJob({ device: agent.deviceId, module: fibo, function: "add32", args: [2, 3] });
    expect((await cp2.admin.waitForJob(job.id)).result?.value).toBe(5);
  });
});

describe("a forwarder that accepts each connection and closes it at once", () => {
  it("keeps the agent alive, retrying with backoff and saying so, until the control plane answers", async () => {
    const cp = await controlPlane();
    const token = (await cp.admin.createKey("register")).key;
    const target = new URL(cp.url);
    let forward = false;
    const forwarder = net.createServer((client) => {
      if (!forward) return client.destroy();
      const up = net.connect(Number(target.port), target.hostname);
      client.pipe(up).pipe(client);
      up.on("error", () => client.destroy());
      client.on("error", () => up.destroy());
    });
    await new Promise<void>((r) => forwarder.listen(0, "127.0.0.1", r));
    cleanup.push(() => new Promise((r) => forwarder.close(r)));
    const server = `http://127.0.0.1:${(forwarder.address() as AddressInfo).port}`;

    const dataDir = mkdtempSync(join(tmpdir(), "wv-agent-"));
    const proc = spawn(process.execPath, [resolve("dist/device-agent/cli.js"), "agent", "--server", server, "--data-dir", dataDir, "--token", token, "--log-level", "debug"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WASMVISOR_TOKEN: "" },
    });
    cleanup.push(async () => {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    });
    const logs: Record<string, unknown>[] = [];
    createInterface({ input: proc.stdout! }).on("line", (line) => logs.push(JSON.parse(line) as Record<string, unknown>));
    let exit: number | null = null;
    proc.on("exit", (code) => (exit = code));

    // A first request of a process against such a listener can hang until its timeout (10 s); later ones fail at once.
    const retries = () => logs.filter((l) => l.msg === "could not register; retrying").length;
    for (let waited = 0; waited < 40_000 && retries() < 3; waited += 500) {
      await sleep(500);
      expect(exit).toBeNull();
    }
    expect(retries()).toBeGreaterThanOrEqual(3);
    expect(exit).toBeNull();

    forward = true;
    for (let i = 0; i < 300 && !logs.some((l) => l.msg === "agent started"); i++) await sleep(100);
    expect(logs.some((l) => l.msg === "agent started")).toBe(true);
    expect(exit).toBeNull();
  });
});
