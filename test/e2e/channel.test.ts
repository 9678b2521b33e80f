/**
 * The SDK's streaming submission channel (client.channel()) against the real control plane and
 * a real agent running the wasmiot fibo.wasm: answers once per submission, back-pressure under
 * the server's in-flight limit, refusals as ChannelError with the problem, idempotent resubmission.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { ChannelError, CHANNEL_LIMITS, WasmvisorClient } from "../../src/sdk/index.js";

describe("the submission channel through the SDK", () => {
  let cp: ControlPlane;
  let agent: AgentProcess;
  let fibo: string;

  beforeAll(async () => {
    cp = await startControlPlane();
    const key = await cp.admin.createKey("register", "e2e");
    agent = await startAgent({ server: cp.url, token: key.key, args: ["--pool-size", "2", "--name", "channel-device", "--transport", "ws"] });
    await agent.waitForLog((l) => l.msg === "push transport connected");
    fibo = (await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"))).digest;
  });

  afterAll(async () => {
    await agent?.kill();
    await cp?.stop();
  });

  it("answers each of many concurrent submissions once, with its result, queueing beyond the server's in-flight limit", async () => {
    const ch = await cp.admin.channel();
    const n = CHANNEL_LIMITS.maxInFlight + 44;
    // All at once: the SDK holds back what the server would refuse (429), so none is refused.
    const answers = await Promise.all(Array.from({ length: n }, (_, i) => ch.submit({ device: agent.deviceId, module: fibo, function: "fibo", args: [(i % 20) + 1] }, { waitSeconds: 60 })));
    const fib = (k: number): number => (k < 2 ? 1 : fib(k - 1) + fib(k - 2));
    for (const [i, a] of answers.entries()) {
      // Under load a job may outlast its wait: then the answer is the 202 one (still queued or
      // running) and the job is asked for, as a caller would.
      const job = a.done ? a.job : await cp.admin.waitForJob(a.job.id, { timeoutSeconds: 120 });
      expect(job.state).toBe("SUCCEEDED");
      // wasmiot's fibo: fibo(12) = 233, fibo(20) = 10946
      expect(job.result?.value).toBe(fib((i % 20) + 1));
    }
    expect(new Set(answers.map((a) => a.job.id)).size).toBe(n);
    expect(ch.inFlight).toBe(0);
    ch.close();
  }, 300_000); // 300 jobs on a shared 2-core machine: a budget, not a timing assertion

  it("rejects a bad submission with the problem naming the field, and the channel keeps working", async () => {
    const ch = await cp.admin.channel();
    const bad = await ch.submit({ device: agent.deviceId, module: fibo, function: "fibo", args: "twenty" }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(ChannelError);
    expect((bad as ChannelError).status).toBe(400);
    expect((bad as ChannelError).problem.errors?.map((e) => e.path)).toContain("job.args");
    const good = await ch.submit({ device: agent.deviceId, module: fibo, function: "fibo", args: [12] });
    expect(good.job.result?.value).toBe(233);
    ch.close();
  });

  it("answers a resubmission with the same idempotency key with the same job", async () => {
    const ch = await cp.admin.channel();
    const job = { device: agent.deviceId, module: fibo, function: "fibo", args: [15] };
    const first = await ch.submit(job, { idempotencyKey: "e2e-channel-1" });
    ch.close();
    const again = await cp.admin.channel();
    const second = await again.submit(job, { idempotencyKey: "e2e-channel-1" });
    expect(second.job.id).toBe(first.job.id);
    expect([first.replayed, second.replayed]).toEqual([false, true]);
    again.close();
  });

  it("is refused before the upgrade with the problem for a bad credential", async () => {
    const stranger = new WasmvisorClient({ server: cp.url, token: "wvk.nope.nope" });
    const refused = await stranger.channel().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ChannelError);
    expect((refused as ChannelError).status).toBe(401);
    expect((refused as ChannelError).problem.type).toBe("urn:wasmvisor:problem:unauthenticated");
  });
});
