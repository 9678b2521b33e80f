/**
 * Fencing at the device object: each agent session gets the next epoch; what an older session sends
 * (acks, results, logs, heartbeats, polls, deployment reports, a socket upgrade or socket messages)
 * is refused with 409 `fenced` and changes nothing; its leases go back to the queue at once.
 */
import { describe, expect, it } from "vitest";
import { SELF } from "cloudflare:test";
import { call, health, poll, registerDevice, submit, uploadModule } from "./helpers.js";
import { until } from "../helpers/until.js";

const EPOCH = "x-wasmvisor-epoch";
const openSession = async (credential: string) => {
  const res = await call("POST", "/v1/agent/session", { token: credential });
  expect(res.status).toBe(200);
  return res.body as { epoch: number; previous: number; serverTime: number };
};
const as = (credential: string, epoch: number) => ({ token: credential, headersExtra: { [EPOCH]: String(epoch) } });

async function socket(credential: string, epoch: number) {
  const res = await SELF.fetch("https://wasmvisor.test/v1/agent/ws", { headers: { upgrade: "websocket", authorization: `Bearer ${credential}`, [EPOCH]: String(epoch) } });
  if (!res.webSocket) return { res, ws: null, inbox: [] as any[], closed: Promise.resolve({ code: 0 }) };
  const ws = res.webSocket;
  ws.accept();
  const inbox: any[] = [];
  ws.addEventListener("message", (e) => inbox.push(JSON.parse(e.data as string)));
  const closed = new Promise<{ code: number }>((r) => ws.addEventListener("close", (e) => r({ code: e.code })));
  return { res, ws, inbox, closed };
}


describe("agent sessions and epochs", () => {
  it("gives each new session the next epoch, and the device view names the one in charge", async () => {
    const dev = await registerDevice();
    expect((await call("GET", `/v1/devices/${dev.deviceId}`)).body.session).toBeNull();
    const a = await openSession(dev.credential);
    const b = await openSession(dev.credential);
    expect(a).toMatchObject({ epoch: 1, previous: 0 });
    expect(b).toMatchObject({ epoch: 2, previous: 1 });
    expect((await call("GET", `/v1/devices/${dev.deviceId}`)).body.session).toMatchObject({ epoch: 2, refused: 0 });
  });

  it("refuses every kind of request of a session taken over (409 fenced) and changes nothing; the new session's are heard", async () => {
    const dev = await registerDevice();
    const digest = await uploadModule("math");
    const stale = await openSession(dev.credential);
    const job = (await submit(dev.deviceId, digest, "add32", [2, 3], { timeoutMs: 60_000 })).body;
    const lease = (await call("GET", "/v1/agent/jobs?wait=0&max=1", as(dev.credential, stale.epoch))).body.jobs[0];
    const ref = { jobId: job.id as string, leaseToken: lease.leaseToken as string };
    expect((await call("POST", "/v1/agent/acks", { ...as(dev.credential, stale.epoch), json: { started: [ref] } })).body.started).toBe(1);

    const fresh = await openSession(dev.credential); // another process with the same credential
    // Its lease went back to the queue at once: no result of the stale session can be heard any more.
    expect((await call("GET", `/v1/jobs/${job.id}`)).body).toMatchObject({ state: "QUEUED", error: { kind: "lease-expired" } });

    const result = { ...ref, outcome: "succeeded", result: { value: 5, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 1 }, error: null };
    const refusals = [
      await call("POST", "/v1/agent/results", { ...as(dev.credential, stale.epoch), json: { results: [result] } }),
      await call("POST", "/v1/agent/acks", { ...as(dev.credential, stale.epoch), json: { held: [ref] } }),
      await call("POST", "/v1/agent/logs", { ...as(dev.credential, stale.epoch), json: { ...ref, lines: [{ at: 1, stream: "stdout", line: "x" }] } }),
      await call("POST", "/v1/agent/heartbeat", { ...as(dev.credential, stale.epoch), json: { health: health(), runningJobs: [ref] } }),
      await call("GET", "/v1/agent/jobs?wait=0&max=1", as(dev.credential, stale.epoch)),
      await call("POST", "/v1/agent/deployments/status", { ...as(dev.credential, stale.epoch), json: { states: [] } }),
      await call("GET", "/v1/agent/deployments", as(dev.credential, stale.epoch)),
      // no header at all is epoch 0: as stale as any other once a session exists
      await call("POST", "/v1/agent/results", { token: dev.credential, json: { results: [result] } }),
      // an epoch nobody was given is refused too
      await call("POST", "/v1/agent/heartbeat", { ...as(dev.credential, fresh.epoch + 5), json: { health: health(), runningJobs: [] } }),
    ];
    for (const r of refusals) {
      expect(r.status).toBe(409);
      expect(r.type).toBe("application/problem+json");
      expect(r.body.type).toBe("urn:wasmvisor:problem:fenced");
    }
    expect((await call("GET", `/v1/jobs/${job.id}`)).body).toMatchObject({ state: "QUEUED", attempts: 1 });
    expect((await call("GET", `/v1/devices/${dev.deviceId}`)).body.session).toMatchObject({ epoch: fresh.epoch, refused: refusals.length });

    // The new session takes the job, and its result is the one that counts.
    const again = (await call("GET", "/v1/agent/jobs?wait=0&max=1", as(dev.credential, fresh.epoch))).body.jobs[0];
    expect(again.jobId).toBe(job.id);
    const done = await call("POST", "/v1/agent/results", { ...as(dev.credential, fresh.epoch), json: { results: [{ ...result, leaseToken: again.leaseToken }] } });
    expect(done.body.dispositions).toEqual([{ jobId: job.id, disposition: "accepted" }]);
    expect((await call("GET", `/v1/jobs/${job.id}`)).body).toMatchObject({ state: "SUCCEEDED", attempts: 2, result: { value: 5 } });
  });

  it("answers a poll of the stale session at once when a newer one opens (its next poll is refused)", async () => {
    const dev = await registerDevice();
    const stale = await openSession(dev.credential);
    const waiting = call("GET", "/v1/agent/jobs?wait=20&max=1", as(dev.credential, stale.epoch));
    await new Promise((r) => setTimeout(r, 100));
    await openSession(dev.credential);
    const answered = await waiting;
    expect(answered.status).toBe(200);
    expect(answered.body.jobs).toEqual([]);
    expect((await call("GET", "/v1/agent/jobs?wait=0&max=1", as(dev.credential, stale.epoch))).status).toBe(409);
  });

  it("over the WebSocket: a takeover tells the stale socket (`fenced`, close 4009); a stale upgrade is refused and leaves the new socket alone", async () => {
    const dev = await registerDevice();
    const digest = await uploadModule("math");
    const stale = await openSession(dev.credential);
    const old = await socket(dev.credential, stale.epoch);
    expect(old.res.status).toBe(101);
    old.ws!.send(JSON.stringify({ t: "credit", free: 1 }));

    const fresh = await openSession(dev.credential);
    const fenced = await until("a fenced message", () => old.inbox.find((m) => m.t === "fenced"));
    expect(fenced).toMatchObject({ epoch: stale.epoch, current: fresh.epoch });
    expect((await old.closed).code).toBe(4009);

    const current = await socket(dev.credential, fresh.epoch);
    expect(current.res.status).toBe(101);
    current.ws!.send(JSON.stringify({ t: "credit", free: 1 }));
    // The stale process reconnecting is refused before it can replace the current socket.
    const retry = await socket(dev.credential, stale.epoch);
    expect(retry.res.status).toBe(409);
    expect(((await retry.res.json()) as { type: string }).type).toBe("urn:wasmvisor:problem:fenced");
    const job = (await submit(dev.deviceId, digest, "add32", [1, 1])).body;
    const pushed = await until("a push to the current socket", () => current.inbox.find((m) => m.t === "jobs"));
    expect(pushed.jobs[0].jobId).toBe(job.id);
    current.ws!.close();
  });

  it("refuses messages on a socket of a session taken over, even before its close arrives", async () => {
    const dev = await registerDevice();
    const digest = await uploadModule("math");
    const stale = await openSession(dev.credential);
    const old = await socket(dev.credential, stale.epoch);
    old.ws!.send(JSON.stringify({ t: "credit", free: 1 }));
    const job = (await submit(dev.deviceId, digest, "add32", [1, 1], { timeoutMs: 60_000 })).body;
    const pushed = await until("a push", () => old.inbox.find((m) => m.t === "jobs"));
    const ref = { jobId: job.id, leaseToken: pushed.jobs[0].leaseToken };
    await openSession(dev.credential);
    try {
      old.ws!.send(JSON.stringify({ t: "results", id: 1, free: 0, results: [{ ...ref, outcome: "succeeded", result: { value: 2, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 1 }, error: null }] }));
    } catch {
      // already closed on this side: nothing could be sent at all
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(old.inbox.some((m) => m.t === "reported")).toBe(false);
    expect((await call("GET", `/v1/jobs/${job.id}`)).body.state).toBe("QUEUED");
  });

  it("keeps session-less agents (epoch 0) working until a device's first session opens", async () => {
    const dev = await registerDevice();
    expect((await poll(dev.credential)).status).toBe(200);
    await openSession(dev.credential);
    expect((await poll(dev.credential)).status).toBe(409);
  });
});
