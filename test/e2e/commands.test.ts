/**
 * Bounded commands with the real agent: a link that delays every byte longer than a command's life
 * (COMMAND_TTL_MS = 1 s, delay 1.5 s) delivers a job push after its expiry; the agent discards it
 * (never runs it late), says so, and answers `expired`; once the link is quick again the job comes
 * back on a new lease and runs once.
 */
import { describe, expect, it } from "vitest";
import { ADMIN_TOKEN, startControlPlane } from "../helpers/control-plane.js";
import { startAgent } from "../helpers/agent-process.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { compileWat, WAT } from "../helpers/wat.js";
import { until } from "../helpers/until.js";
import { cleanupAfterEach } from "../helpers/cleanup.js";

const cleanup = cleanupAfterEach();

/**
 * A control plane started with `vars`, a TCP proxy in front of it, the hello module uploaded, and a
 * real agent (push transport) registered and connected through the proxy.
 */
async function agentBehindProxy(vars: Record<string, string>) {
  const cp = await startControlPlane({ vars });
  cleanup.push(() => cp.stop());
  const proxy = await TcpProxy.inFrontOf(cp.url);
  cleanup.push(() => proxy.close());
  const hello = (await cp.admin.uploadModule(await compileWat(WAT.hello))).digest;
  const agent = await startAgent({ server: proxy.url, token: (await cp.admin.createKey("register")).key, args: ["--transport", "ws"] });
  cleanup.push(() => agent.kill("SIGKILL"));
  await agent.waitForLog((l) => l.msg === "push transport connected");
  return { cp, proxy, hello, agent };
}

describe("a command that reaches the agent after its expiry", () => {
  it("is discarded and reported expired, never applied late", async () => {
    const { cp, proxy, hello, agent } = await agentBehindProxy({ COMMAND_TTL_MS: "1000" });

    proxy.delay(1_500);
    const job = await cp.admin.submitJob({ device: agent.deviceId, module: hello, function: "greet", args: [], maxAttempts: 3 });
    const discarded = await agent.waitForLog((l) => l.msg === "discarded a command that arrived after its expiry" && l.what === "jobs", 60_000);
    expect(discarded.lateMs as number).toBeGreaterThan(0);
    expect(agent.logs.some((l) => l.msg === "job finished" && l.jobId === job.id)).toBe(false);

    const commands = async () => {
      const res = await fetch(`${cp.url}/v1/devices/${agent.deviceId}/commands`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      return ((await res.json()) as { commands: { id: string; kind: string; subject: string; state: string; reason: string | null }[] }).commands;
    };
    for (let i = 0; i < 300; i++) {
      if ((await commands()).some((c) => c.id === discarded.command && c.state === "expired")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await commands()).find((c) => c.id === discarded.command)).toMatchObject({ kind: "jobs", subject: job.id, state: "expired", reason: expect.stringContaining("after its expiry") });

    proxy.delay(0);
    const done = await cp.admin.waitForJob(job.id, { timeoutSeconds: 60 });
    expect(done.state).toBe("SUCCEEDED");
    expect(done.attempts).toBeGreaterThanOrEqual(2); // the discarded delivery's lease ran out; a later one ran it
    expect(agent.logs.filter((l) => l.msg === "job finished" && l.jobId === job.id)).toHaveLength(1);
    console.log(`[commands] discarded ${discarded.lateMs as number} ms late; job ${done.state} on attempt ${done.attempts}, run once`);
  }, 180_000);
});

describe("a command answer lost with the link", () => {
  it("is kept by the agent and sent again once it reconnects: the command ends acked, not unanswered", async () => {
    // Slow acks and heartbeats are fine here: only the command answer's fate is under test.
    const { cp, proxy, hello, agent } = await agentBehindProxy({ ACK_TIMEOUT_MS: "30000", HEARTBEAT_TIMEOUT_MS: "30000" });

    /**
     * Every byte takes 4 s: a hello job is submitted, and once the agent logs `msg` for it, what the
     * agent answered is still inside the link; the link is cut 500 ms later, then quick again.
     */
    const submitAndCutAfter = async (msg: string) => {
      proxy.delay(4_000);
      const submitted = await cp.admin.submitJob({ device: agent.deviceId, module: hello, function: "greet", args: [] });
      await agent.waitForLog((l) => l.msg === msg && l.jobId === submitted.id, 60_000);
      await new Promise((r) => setTimeout(r, 500));
      expect(proxy.cut()).toBeGreaterThan(0);
      proxy.delay(0);
      return submitted;
    };

    // The push reaches the agent; its answer leaves 50 ms after the push arrived (its batch), then spends 4 s in the link: cut it in there.
    const job = await submitAndCutAfter("job started");

    const commands = async () => {
      const res = await fetch(`${cp.url}/v1/devices/${agent.deviceId}/commands`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      return ((await res.json()) as { commands: { id: string; kind: string; subject: string; state: string }[] }).commands;
    };
    const push = await until("the push's command acked", async () => (await commands()).find((c) => c.kind === "jobs" && c.subject === job.id && c.state === "acked"), 60_000);
    expect(push.state).toBe("acked");
    expect(agent.logs.some((l) => l.msg === "could not send command answers; sending them again")).toBe(true);
    const done = await cp.admin.waitForJob(job.id, { timeoutSeconds: 60 });
    expect(done.state).toBe("SUCCEEDED");
    // The job ran once, on its first attempt: the cut also broke the download of its module (the module
    // was not in the agent's cache yet, and came through the same slow link); that download is tried
    // again once the link is back, it does not fail the attempt (a retry would run the job a second time).
    const runs = (id: string) => agent.logs.filter((l) => l.msg === "job finished" && l.jobId === id);
    expect(runs(job.id)).toHaveLength(1);
    expect(runs(job.id)[0]!.outcome).toBe("succeeded");
    expect(done.attempts).toBe(1);
    expect(done.result).toMatchObject({ value: 42 });

    // Again with the module cached: the job runs at once, and its started ack and its result are both in
    // the link when it is cut. The result is sent again after the reconnect; the job is not run again.
    const again = await submitAndCutAfter("job finished");
    const doneAgain = await cp.admin.waitForJob(again.id, { timeoutSeconds: 60 });
    expect(doneAgain.state).toBe("SUCCEEDED");
    expect(runs(again.id)).toHaveLength(1);
    expect(doneAgain.attempts).toBe(1);
    expect(doneAgain.result).toMatchObject({ value: 42 });
    console.log(`[commands] answers lost with the link: job 1 ran ${runs(job.id).length}x (attempts ${done.attempts}), job 2 ran ${runs(again.id).length}x (attempts ${doneAgain.attempts})`);
  }, 180_000);
});
