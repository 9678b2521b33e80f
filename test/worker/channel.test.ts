/** The streaming submission channel (GET /v1/jobs/channel) inside workerd: each submission handled as POST /v1/jobs. */
import { describe, expect, it } from "vitest";
import { SELF } from "cloudflare:test";
import { ChannelServerMessage, CHANNEL_LIMITS } from "../../src/protocol/channel.js";
import { ADMIN, call, DESCRIPTION, openSocket, poll, registerDevice, report, sleep, uploadModule } from "./helpers.js";

async function open(token: string) {
  // Every message the server sends is one the protocol documents.
  const ch = await openSocket("/v1/jobs/channel", token, (d) => ChannelServerMessage.parse(JSON.parse(d)), 20_000);
  const answerTo = (ref: string) => ch.next((m) => m.type !== "ready" && m.ref === ref) as Promise<Exclude<ChannelServerMessage, { type: "ready" }>>;
  const ready = await ch.next((m) => m.type === "ready");
  return { ...ch, ready, answerTo };
}

async function tenant(ns: string) {
  const admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: ns } })).body.key as string;
  const user = (await call("POST", "/v1/keys", { token: admin, json: { role: "user" } })).body;
  const register = (await call("POST", "/v1/keys", { token: admin, json: { role: "register" } })).body.key as string;
  const dev = (await call("POST", "/v1/devices/register", { token: register, json: { name: `${ns}-dev`, description: DESCRIPTION } })).body;
  return { admin, user: user.key as string, userKeyId: user.id as string, register, deviceId: dev.deviceId as string };
}

describe("the submission channel", () => {
  it("refuses before the upgrade: no upgrade (426), no or bad credential (401), a role that may not submit (403)", async () => {
    expect((await call("GET", "/v1/jobs/channel")).status).toBe(426);
    const upgrade = { upgrade: "websocket" };
    const anonymous = await call("GET", "/v1/jobs/channel", { token: null, headersExtra: upgrade });
    expect(anonymous.status).toBe(401);
    expect(anonymous.type).toBe("application/problem+json");
    expect((await call("GET", "/v1/jobs/channel", { token: "wvk.nope.nope", headersExtra: upgrade })).status).toBe(401);
    const register = (await call("POST", "/v1/keys", { json: { role: "register" } })).body.key as string;
    expect((await call("GET", "/v1/jobs/channel", { token: register, headersExtra: upgrade })).status).toBe(403);
    const { credential } = await registerDevice("channel-device-role");
    expect((await call("GET", "/v1/jobs/channel", { token: credential, headersExtra: upgrade })).status).toBe(403);
  });

  it("takes the dashboard's session cookie only from this origin (no cross-site WebSocket hijacking)", async () => {
    const key = (await call("POST", "/v1/keys", { json: { role: "user" } })).body.key as string;
    const login = await call("POST", "/v1/session", { token: key });
    const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
    const upgrade = { upgrade: "websocket", cookie };
    const foreign = await call("GET", "/v1/jobs/channel", { token: null, headersExtra: { ...upgrade, origin: "https://evil.example" } });
    expect(foreign.status).toBe(403);
    const own = await SELF.fetch("https://wasmvisor.test/v1/jobs/channel", { headers: { ...upgrade, origin: "https://wasmvisor.test" } });
    expect(own.status).toBe(101);
    const ws = own.webSocket!;
    ws.accept();
    const { deviceId } = await registerDevice("channel-cookie");
    const digest = await uploadModule("math");
    const answer = new Promise<ChannelServerMessage>((resolve) => ws.addEventListener("message", (e) => {
      const m = ChannelServerMessage.parse(JSON.parse(e.data as string));
      if (m.type !== "ready") resolve(m);
    }));
    // The replayed POST carries the session and the CSRF header the channel adds: it is accepted as the key's role.
    ws.send(JSON.stringify({ type: "submit", ref: "c", job: { device: deviceId, module: digest, function: "add32", args: [1, 2] }, wait: 0 }));
    const m = await answer;
    expect(m.type === "result" && m.status).toBe(202);
    ws.close();
  });

  it("answers every submission exactly once, with its result when the agent reports within the wait", async () => {
    const { deviceId, credential } = await registerDevice("channel-results");
    const digest = await uploadModule("math");
    const ch = await open(ADMIN);
    expect(ch.ready).toEqual({ type: "ready", maxInFlight: CHANNEL_LIMITS.maxInFlight, maxMessageBytes: CHANNEL_LIMITS.maxMessageBytes });
    const n = 12;
    for (let i = 0; i < n; i++) ch.send({ type: "submit", ref: `r${i}`, job: { device: deviceId, module: digest, function: "add32", args: [i, 1] }, wait: 20 });
    // The agent (long-poll transport) takes the jobs and reports each one's value: the job's own argument.
    let reported = 0;
    const jobs = new Map<string, number>();
    while (reported < n) {
      const d = await poll(credential, 16, 1);
      for (const j of (d.body?.jobs ?? []) as { jobId: string; leaseToken: string; args: number[] }[]) {
        expect((await report(credential, j.jobId, j.leaseToken, j.args[0])).status).toBe(200);
        jobs.set(j.jobId, j.args[0]!);
        reported++;
      }
    }
    for (let i = 0; i < n; i++) {
      const a = await ch.answerTo(`r${i}`);
      if (a.type !== "result") throw new Error(JSON.stringify(a));
      expect(a.status).toBe(200);
      expect(a.replayed).toBe(false);
      expect((a.job as { state: string }).state).toBe("SUCCEEDED");
      expect((a.job as { result: { value: number } }).result.value).toBe(i);
      expect(jobs.get((a.job as { id: string }).id)).toBe(i);
    }
    // Nothing more arrives for them: one answer per submission.
    await sleep(300);
    const answers = ch.all.filter((m) => m.type !== "ready");
    expect(answers).toHaveLength(n);
    expect(new Set(answers.map((m) => (m as { ref: string }).ref)).size).toBe(n);
    ch.ws.close();
  });

  it("answers a bad message with an error naming the field, and stays up", async () => {
    const { deviceId } = await registerDevice("channel-bad");
    const digest = await uploadModule("math");
    const ch = await open(ADMIN);
    ch.send("not json at all");
    const notJson = await ch.next((m) => m.type === "error" && m.ref === null);
    expect(notJson.type === "error" && notJson.problem.errors?.[0]?.path).toBe("(message)");
    ch.send({ type: "submit", job: {} });
    const noRef = await ch.next((m) => m.type === "error");
    expect(noRef.type === "error" && noRef.problem.errors?.map((e) => e.path)).toContain("ref");
    ch.send({ type: "submit", ref: "w", job: {}, wait: 9999 });
    const badWait = await ch.answerTo("w");
    expect(badWait.type === "error" && badWait.status).toBe(400);
    expect(badWait.type === "error" && badWait.problem.errors?.map((e) => e.path)).toContain("wait");
    // The job itself is judged by POST /v1/jobs's own schema; its fields are named under `job.`.
    ch.send({ type: "submit", ref: "a", job: { device: deviceId, module: digest, function: "add32", args: "one" }, wait: 0 });
    const badArgs = await ch.answerTo("a");
    expect(badArgs.type).toBe("error");
    expect(badArgs.type === "error" && badArgs.problem.errors?.map((e) => e.path)).toContain("job.args");
    ch.send({ type: "submit", ref: "s", job: { device: deviceId, module: digest, function: "add32", args: [1, 2], surprise: true }, wait: 0 });
    const surprise = await ch.answerTo("s");
    expect(surprise.type === "error" && surprise.status).toBe(400);
    ch.send({ type: "submit", ref: "f", job: { device: deviceId, module: digest, function: "nope", args: [] }, wait: 0 });
    const noFn = await ch.answerTo("f");
    expect(noFn.type === "error" && noFn.status).toBe(400);
    expect(noFn.type === "error" && noFn.problem.detail).toContain("add32");
    // Still up: a good submission is queued (202 with wait 0), and nothing bad was stored.
    ch.send({ type: "submit", ref: "ok", job: { device: deviceId, module: digest, function: "add32", args: [1, 2] }, wait: 0 });
    const good = await ch.answerTo("ok");
    expect(good.type === "result" && good.status).toBe(202);
    expect(ch.closed()).toBeNull();
    expect((await call("GET", `/v1/devices/${deviceId}`)).body.queue).toEqual({ queued: 1, running: 0 });
    ch.ws.close();
  });

  it("checks the namespace per message as the REST route does, and ends when the key is revoked", async () => {
    const a = await tenant("chan-a");
    const b = await tenant("chan-b");
    const digest = await uploadModule("math");
    const ch = await open(a.user);
    ch.send({ type: "submit", ref: "theirs", job: { device: b.deviceId, module: digest, function: "add32", args: [1, 2] }, wait: 0 });
    const theirs = await ch.answerTo("theirs");
    expect(theirs.type === "error" && theirs.status).toBe(404);
    expect((await call("GET", `/v1/devices/${b.deviceId}`)).body.queue).toEqual({ queued: 0, running: 0 });
    ch.send({ type: "submit", ref: "mine", job: { device: a.deviceId, module: digest, function: "add32", args: [1, 2] }, wait: 0 });
    expect((await ch.answerTo("mine")).type).toBe("result");
    expect((await call("DELETE", `/v1/keys/${a.userKeyId}`, { token: a.admin })).status).toBe(200);
    ch.send({ type: "submit", ref: "after", job: { device: a.deviceId, module: digest, function: "add32", args: [1, 2] }, wait: 0 });
    const after = await ch.answerTo("after");
    expect(after.type === "error" && after.status).toBe(401);
    for (let i = 0; i < 200 && !ch.closed(); i++) await sleep(20);
    expect(ch.closed()?.code).toBe(1008);
  });

  it("answers a resubmission with the same idempotency key with the same job, and refuses the key with another body", async () => {
    const { deviceId } = await registerDevice("channel-idem");
    const digest = await uploadModule("math");
    const ch = await open(ADMIN);
    const job = { device: deviceId, module: digest, function: "add32", args: [3, 4] };
    ch.send({ type: "submit", ref: "1", job, wait: 0, idempotencyKey: "k-1" });
    const first = await ch.answerTo("1");
    ch.send({ type: "submit", ref: "2", job, wait: 0, idempotencyKey: "k-1" });
    const second = await ch.answerTo("2");
    if (first.type !== "result" || second.type !== "result") throw new Error(JSON.stringify([first, second]));
    expect(second.job.id).toBe(first.job.id);
    expect([first.replayed, second.replayed]).toEqual([false, true]);
    // The key binds the same way over REST: the channel and POST /v1/jobs share it.
    const rest = await call("POST", "/v1/jobs", { json: job, headersExtra: { "idempotency-key": "k-1" } });
    expect(rest.body.id).toBe(first.job.id);
    ch.send({ type: "submit", ref: "3", job: { ...job, args: [5, 6] }, wait: 0, idempotencyKey: "k-1" });
    const conflict = await ch.answerTo("3");
    expect(conflict.type === "error" && conflict.status).toBe(409);
    expect((await call("GET", `/v1/devices/${deviceId}`)).body.queue.queued).toBe(1);
    ch.ws.close();
  });

  it("enforces the message size and the in-flight limit, and a ref in flight is not reused", async () => {
    const { deviceId } = await registerDevice("channel-limits");
    const digest = await uploadModule("math");
    const ch = await open(ADMIN);
    ch.send({ type: "submit", ref: "big", job: { pad: "x".repeat(CHANNEL_LIMITS.maxMessageBytes) } });
    const big = await ch.next((m) => m.type === "error");
    expect(big.type === "error" && big.status).toBe(413);
    // No agent: each submission waits (wait 10 s) and stays in flight; one more than the limit is refused at once.
    const job = { device: deviceId, module: digest, function: "add32", args: [1, 2] };
    for (let i = 0; i < CHANNEL_LIMITS.maxInFlight; i++) ch.send({ type: "submit", ref: `w${i}`, job, wait: 10 });
    ch.send({ type: "submit", ref: "w0", job, wait: 0 });
    ch.send({ type: "submit", ref: "one-too-many", job, wait: 0 });
    const dup = await ch.next((m) => m.type === "error" && m.ref === "w0");
    expect(dup.type === "error" && dup.status).toBe(409);
    const over = await ch.answerTo("one-too-many");
    expect(over.type === "error" && over.status).toBe(429);
    expect(over.type === "error" && over.problem.type).toBe("urn:wasmvisor:problem:too-many-in-flight");
    // Once the waits run out, every held submission is answered (202, still queued) and the slots are free again.
    for (let i = 0; i < CHANNEL_LIMITS.maxInFlight; i++) {
      const a = await ch.answerTo(`w${i}`);
      expect(a.type === "result" && a.status).toBe(202);
    }
    ch.send({ type: "submit", ref: "again", job, wait: 0 });
    expect((await ch.answerTo("again")).type).toBe("result");
    ch.ws.close();
  });
});
