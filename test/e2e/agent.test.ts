/**
 * End to end: the real control plane (workerd via wrangler), the real agent as a
 * child process, real Wasm (the wasmiot fibo.wasm and modules built from WAT).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { compileAll, type WatName } from "../helpers/wat.js";
import type { JobSubmissionInput } from "../../src/sdk/index.js";

// Both transports carry the same guarantees, so the whole file runs over each.
describe.each(["ws", "poll"] as const)("over the %s transport", (transport) => {
  let cp: ControlPlane;
  let agent: AgentProcess;
  const digests = {} as Record<WatName | "fibo", string>;

  beforeAll(async () => {
    cp = await startControlPlane();
    const key = await cp.admin.createKey("register", "e2e");
    agent = await startAgent({ server: cp.url, token: key.key, args: ["--pool-size", "2", "--max-memory-mb", "16", "--name", "e2e-device", "--transport", transport] });
    await agent.waitForLog((l) => (transport === "ws" ? l.msg === "push transport connected" : true));
    const modules = await compileAll();
    for (const [name, bytes] of Object.entries(modules)) digests[name as WatName] = (await cp.admin.uploadModule(bytes)).digest;
    digests.fibo = (await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"))).digest;
  });

  afterAll(async () => {
    await agent?.kill();
    await cp?.stop();
  });

  async function run(module: WatName | "fibo", fn: string, args: JobSubmissionInput["args"] = [], extra: Partial<JobSubmissionInput> = {}) {
    const job = await cp.admin.submitJob({ device: agent.deviceId, module: digests[module], function: fn, args, ...extra });
    return cp.admin.waitForJob(job.id, { timeoutSeconds: 45 });
  }

  describe("the real wasmiot fibo.wasm", () => {
    it("computes fibo(12) = 233 and subtract(10, 3) = 7", async () => {
      expect(await run("fibo", "fibo", [12])).toMatchObject({ state: "SUCCEEDED", result: { value: 233 }, attempts: 1 });
      expect((await run("fibo", "subtract", [10, 3])).result?.value).toBe(7);
    });

    it("answers 202 at once with status and result URLs", async () => {
      const job = await cp.admin.submitJob({ device: agent.deviceId, module: digests.fibo, function: "fibo", args: [20] });
      // The agent's open poll may receive the job inside the same request.
      expect(["QUEUED", "LEASED"]).toContain(job.state);
      expect(job.links).toEqual({ self: `/v1/jobs/${job.id}`, result: `/v1/jobs/${job.id}/result` });
      expect((await cp.admin.waitForJob(job.id)).result?.value).toBe(10946);
    });
  });

  describe("WASI in the sandbox", () => {
    it("captures stdout and stderr", async () => {
      const job = await run("hello", "greet");
      expect(job).toMatchObject({ state: "SUCCEEDED", result: { value: 42, stdout: "hello from wasm\n", stderr: "a warning\n", stdoutTruncated: false } });
    });

    it("bounds captured output and marks the truncation", async () => {
      const job = await run("hello", "shout", [10_000]);
      expect(job.state).toBe("SUCCEEDED");
      expect(job.result!.stdout.length).toBe(64 * 1024);
      expect(job.result!.stdoutTruncated).toBe(true);
    });

    it("ends a flood of 2,000 writes of 64 KiB without a newline quickly, its output cut and marked truncated", async () => {
      const job = await run("flood", "flood", [1, 2000], { timeoutMs: 20_000, maxAttempts: 1 });
      expect(job).toMatchObject({ state: "SUCCEEDED", result: { value: 2000, stdoutTruncated: true, stderrTruncated: false } });
      expect(job.result!.stdout.length).toBe(64 * 1024);
      expect(job.result!.durationMs).toBeLessThan(10_000);
      const logs = await cp.admin.jobLogs(job.id);
      expect(logs.lines.map((l) => l.line.length)).toEqual([4096]);
    });

    it("delivers every result of jobs writing 64 KiB to stdout and 64 KiB to stderr (batches fit the body limit)", async () => {
      const jobs = await Promise.all(
        Array.from({ length: 8 }, () => cp.admin.submitJob({ device: agent.deviceId, module: digests.flood, function: "both", args: [1], maxAttempts: 1 })),
      );
      const done = await Promise.all(jobs.map((j) => cp.admin.waitForJob(j.id, { timeoutSeconds: 45 })));
      for (const job of done) {
        expect(job).toMatchObject({ state: "SUCCEEDED", attempts: 1, result: { value: 1, stdoutTruncated: false, stderrTruncated: false } });
        expect([job.result!.stdout.length, job.result!.stderr.length]).toEqual([64 * 1024, 64 * 1024]);
      }
      expect(agent.logs.some((l) => String(l.msg).includes("dropping"))).toBe(false);
    });

    it("writes files inside the module's sandbox directory", async () => {
      expect((await run("files", "write_file")).result?.value).toBe(0);
      const file = join(agent.dataDir, "sandbox", digests.files, "out.txt");
      expect(readFileSync(file, "utf8")).toBe("sandboxed\n");
    });

    it("refuses ../ and absolute paths (ENOTCAPABLE)", async () => {
      expect((await run("files", "escape")).result?.value).toBe(76);
      expect(existsSync(join(agent.dataDir, "sandbox", "escape.txt"))).toBe(false);
      expect((await run("files", "read_absolute")).result?.value).not.toBe(0);
    });

    it("leaks no host environment variables", async () => {
      expect((await run("environ", "env_count")).result?.value).toBe(0);
    });

    it("reports proc_exit codes: 0 succeeds, anything else fails with the code", async () => {
      expect(await run("exit", "exit_with", [0])).toMatchObject({ state: "SUCCEEDED", result: { exitCode: 0 } });
      expect(await run("exit", "exit_with", [3])).toMatchObject({ state: "FAILED", result: { exitCode: 3 }, error: { kind: "exit" } });
    });
  });

  describe("limits and faults in the guest", () => {
    it("stops an infinite loop at its timeout, and keeps serving", async () => {
      const spun = await run("spin", "spin", [], { timeoutMs: 500, maxAttempts: 1 });
      expect(spun).toMatchObject({ state: "TIMED_OUT", error: { kind: "timeout" } });
      expect((await run("fibo", "fibo", [5])).result?.value).toBe(8);
    });

    it("fails a memory-growth bomb at the memory cap, and keeps serving", async () => {
      const bomb = await run("bomb", "grow");
      expect(bomb.state).toBe("FAILED");
      expect(bomb.error?.kind).toBe("trap");
      expect((await run("fibo", "fibo", [5])).result?.value).toBe(8);
    });

    it("fails a trap with a clear message and does not retry it", async () => {
      const job = await run("math", "trap", [], { maxAttempts: 3 });
      expect(job).toMatchObject({ state: "FAILED", attempts: 1, error: { kind: "trap" } });
      expect(job.error?.message).toMatch(/divide by zero/);
    });

    it("rejects a job the device cannot run (a host interface it does not link), naming what is missing", async () => {
      const job = await run("needsHost", "run");
      expect(job).toMatchObject({ state: "REJECTED", attempts: 0, error: { kind: "link-error" } });
      expect(job.error?.message).toContain("camera.takeImage");
    });

    it("rejects on the agent a module that needs more memory at start than its cap, without retrying", async () => {
      const job = await run("huge", "run", [], { maxAttempts: 3 });
      expect(job).toMatchObject({ state: "REJECTED", attempts: 1, error: { kind: "memory-limit" } });
      expect(job.error?.message).toContain("300 pages");
    });

    it("passes i64 values beyond 2^53 exactly, as decimal strings", async () => {
      const job = await run("math", "add64", ["9007199254740993", 2]);
      expect(job.result?.value).toBe("9007199254740995");
      expect((await run("math", "pair", [7])).result?.value).toEqual([7, "9007199254740993"]);
      expect((await run("math", "half", [5])).result?.value).toBe(2.5);
    });
  });

  describe("the device as the control plane sees it", () => {
    it("shows real capabilities and real health", async () => {
      await agent.waitForLog(() => true);
      const device = await cp.admin.getDevice(agent.deviceId);
      expect(device.status).toBe("online");
      expect(device.name).toBe("e2e-device");
      expect(device.description.platform.memory.bytes).toBeGreaterThan(0);
      expect(device.description.platform.cpu.humanReadableName.length).toBeGreaterThan(0);
      expect(device.description.supervisorInterfaces).toEqual(expect.arrayContaining(["fd_write", "path_open", "proc_exit"]));
      expect(device.health).toMatchObject({ memoryTotalBytes: expect.any(Number), diskFreeBytes: expect.any(Number) });
      expect(device.health!.uptimeSeconds).toBeGreaterThan(0);
      expect(device.health!.loadAverage).toHaveLength(3);
    });

    it("runs several jobs at once on its pool", async () => {
      const jobs = await Promise.all(Array.from({ length: 8 }, (_, i) => cp.admin.submitJob({ device: agent.deviceId, module: digests.fibo, function: "fibo", args: [i + 1] })));
      const done = await Promise.all(jobs.map((j) => cp.admin.waitForJob(j.id)));
      expect(done.map((j) => j.result?.value)).toEqual([1, 2, 3, 5, 8, 13, 21, 34]);
    });
  });

  describe("create and wait in one request", () => {
    it("answers 200 with the ended job when it finishes within ?wait=, 202 when it does not", async () => {
      const quick = await cp.admin.runJob({ device: agent.deviceId, module: digests.fibo, function: "fibo", args: [20] }, 10);
      expect(quick).toMatchObject({ done: true, job: { state: "SUCCEEDED", result: { value: 10946 } } });
      const slow = await cp.admin.runJob({ device: agent.deviceId, module: digests.sleep, function: "sleep_ms", args: [1500] }, 0.2);
      expect(slow.done).toBe(false);
      expect((await cp.admin.waitForJob(slow.job.id)).result?.value).toBe(1500);
    });
  });


  describe("job logs", () => {
    it("keeps output line by line with timestamps, stdout and stderr apart", async () => {
      const job = await run("hello", "greet");
      const logs = await cp.admin.jobLogs(job.id);
      expect(logs.done).toBe(true);
      expect(logs.lines.map((l) => [l.stream, l.line])).toEqual([["stdout", "hello from wasm"], ["stderr", "a warning"]]);
      expect(logs.lines[0]!.at).toBeGreaterThanOrEqual(Date.parse(job.createdAt));
    });

    it("bounds the lines kept and marks the truncation", async () => {
      const job = await run("hello", "shout", [6000]);
      const logs = await cp.admin.jobLogs(job.id);
      expect(logs.truncated).toBe(true);
      expect(logs.lines).toHaveLength(5001);
      expect(logs.lines.at(-1)!.line).toContain("truncated");
    });

    it("streams lines while the job runs (SSE), then the end", async () => {
      const job = await cp.admin.submitJob({ device: agent.deviceId, module: digests.ticker, function: "tick", args: [5, 300] });
      const seen: { line: string; receivedAt: number }[] = [];
      const follow = cp.admin.followLogs(job.id);
      let end: { state: string } | undefined;
      for (;;) {
        const n = await follow.next();
        if (n.done) {
          end = n.value;
          break;
        }
        seen.push({ line: n.value.line, receivedAt: Date.now() });
      }
      expect(end).toEqual({ state: "SUCCEEDED" });
      expect(seen.map((s) => s.line)).toEqual(["tick 0", "tick 1", "tick 2", "tick 3", "tick 4"]);
      const finished = Date.parse((await cp.admin.getJob(job.id)).finishedAt!);
      // The guest spends 1.5 s after its first line: that line reached us well before the job ended.
      expect(seen[0]!.receivedAt).toBeLessThan(finished);
    });
  });

  describe("operating the device", () => {
    it("stops a running job when it is canceled, and the slot serves the next job", async () => {
      const job = await cp.admin.submitJob({ device: agent.deviceId, module: digests.sleep, function: "sleep_ms", args: [20_000], timeoutMs: 30_000 });
      for (let i = 0; i < 100 && (await cp.admin.getJob(job.id)).state !== "RUNNING"; i++) await new Promise((r) => setTimeout(r, 50));
      expect((await cp.admin.cancelJob(job.id)).state).toBe("CANCELED");
      // The agent hears of it (pushed over the WebSocket, or in its next heartbeat when polling) and ends the thread.
      const stopped = await agent.waitForLog((l) => l.msg === "stopped a job the control plane no longer leases to us" && l.jobId === job.id, 10_000);
      expect(stopped).toBeTruthy();
      expect((await run("fibo", "fibo", [5])).result?.value).toBe(8);
      expect((await cp.admin.getJob(job.id)).state).toBe("CANCELED");
    });

    it("stops a call running in a deployment's kept instance when it is canceled; the instance ends and the next call works", async () => {
      const { generateSigningKey, signDeployment } = await import("../../src/sdk/index.js");
      const { privateJwk, publicJwk } = await generateSigningKey("ES256");
      await cp.admin.trustOrchestratorKey(publicJwk, `cancel test ${transport}`);
      const id = `kept-${transport}`;
      const functions = { count: { result: "integer" as const, instance: "deployment" as const }, spin: { instance: "deployment" as const, timeoutMs: 120_000 } };
      await cp.admin.deploy(await signDeployment(privateJwk, { id, modules: [{ name: "c", digest: digests.counter, devices: [agent.deviceId], functions }] }));
      expect((await cp.admin.waitForDeployment(id)).state).toBe("active");
      const count = async () => (await cp.admin.runFunction(id, "c", "count", {}, 30)).job.result?.value;
      expect([await count(), await count()]).toEqual([1, 2]); // one instance, kept between calls

      const spinning = await cp.admin.callFunction(id, "c", "spin");
      for (let i = 0; i < 200 && (await cp.admin.getJob(spinning.job)).state !== "RUNNING"; i++) await new Promise((r) => setTimeout(r, 50));
      // A call queued behind the loop (calls of one instance run one at a time), canceled before it starts: it never runs.
      const queued = await cp.admin.callFunction(id, "c", "count");
      for (let i = 0; i < 100 && (await cp.admin.getJob(queued.job)).state === "QUEUED"; i++) await new Promise((r) => setTimeout(r, 50));
      expect((await cp.admin.cancelJob(queued.job)).state).toBe("CANCELED");
      await new Promise((r) => setTimeout(r, transport === "ws" ? 300 : 1_500)); // the agent hears of it (push, or its next heartbeat)
      expect((await cp.admin.cancelJob(spinning.job)).state).toBe("CANCELED");
      await agent.waitForLog((l) => l.msg === "stopped a job the control plane no longer leases to us" && l.jobId === spinning.job, 10_000);
      // The next call runs at once (it no longer waits behind the loop) in a new instance: its state starts over.
      const next = await cp.admin.runFunction(id, "c", "count", {}, 20);
      expect(next).toMatchObject({ done: true, job: { state: "SUCCEEDED", result: { value: 1 } } });
      expect((await cp.admin.getJob(spinning.job)).state).toBe("CANCELED");
      expect((await cp.admin.getJob(queued.job)).state).toBe("CANCELED");
    });

    it("ships the agent's own log lines to the control plane (runner.logs)", async () => {
      let lines: { msg: string; level: string }[] = [];
      for (let i = 0; i < 60; i++) {
        lines = (await cp.admin.request<{ lines: { msg: string; level: string }[] }>("GET", `/v1/devices/${agent.deviceId}/logs`)).body.lines;
        if (lines.some((l) => l.msg === "job finished")) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(["agent started", "job finished"]));
      const viaRpc = await cp.admin.rpc<{ lines: unknown[] }>("runner.logs", { id: agent.deviceId, limit: 5 });
      expect(viaRpc.lines.length).toBeLessThanOrEqual(5);
    });
  });
});
