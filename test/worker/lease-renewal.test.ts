/**
 * Leases kept the way BullMQ's lock manager keeps locks: the agent renews every lease it holds,
 * started or not, and acks over the WebSocket are answered so that the agent can retry them.
 * Time is the device object's injected clock (ACK_TIMEOUT_MS=300, LEASE_GRACE_MS=300 here).
 */
import { describe, expect, it } from "vitest";
import { env, runDurableObjectAlarm, runInDurableObject, SELF } from "cloudflare:test";
import { call, health, poll, registerDevice, submit, uploadModule } from "./helpers.js";
import type { DeviceObject } from "../../src/durable/device-object.js";

const stub = (deviceId: string) => env.DEVICES.get(env.DEVICES.idFromName(deviceId));
const T0 = Date.parse("2026-11-27T10:00:00Z");
const setClock = (deviceId: string, ms: number) => runInDurableObject(stub(deviceId), (obj: DeviceObject) => obj.clock.set(ms));

async function runningJob(timeoutMs: number) {
  const dev = await registerDevice();
  const digest = await uploadModule("math");
  await setClock(dev.deviceId, T0);
  const job = (await submit(dev.deviceId, digest, "add32", [1, 1], { timeoutMs })).body;
  const lease = (await poll(dev.credential)).body.jobs[0];
  const ref = { jobId: job.id as string, leaseToken: lease.leaseToken as string };
  const ack = await call("POST", "/v1/agent/acks", { token: dev.credential, json: { started: [ref] } });
  expect(ack.body.started).toBe(1);
  return { ...dev, ref };
}

describe("renewing held leases", () => {
  it("extends a RUNNING job's lease when the agent renews it, so it outlives its first lease", async () => {
    const { deviceId, credential, ref } = await runningJob(1_000); // lease: T0 + 1,000 + 300
    await setClock(deviceId, T0 + 1_200);
    const renewed = await call("POST", "/v1/agent/acks", { token: credential, json: { held: [ref] } });
    expect(renewed.body.held).toBe(1);
    await setClock(deviceId, T0 + 1_400); // past the first lease, inside the renewed one
    await runDurableObjectAlarm(stub(deviceId));
    expect((await call("GET", `/v1/jobs/${ref.jobId}`)).body).toMatchObject({ state: "RUNNING", attempts: 1 });
    // Without renewals, the lease still ends.
    await setClock(deviceId, T0 + 1_600);
    await runDurableObjectAlarm(stub(deviceId));
    expect((await call("GET", `/v1/jobs/${ref.jobId}`)).body).toMatchObject({ state: "QUEUED", error: { kind: "lease-expired" } });
  });

  it("never shortens a lease by renewing it", async () => {
    const { deviceId, credential, ref } = await runningJob(10_000); // lease: T0 + 10,300
    await call("POST", "/v1/agent/acks", { token: credential, json: { held: [ref] } }); // T0 + 300 would be earlier
    await setClock(deviceId, T0 + 5_000);
    await runDurableObjectAlarm(stub(deviceId));
    expect((await call("GET", `/v1/jobs/${ref.jobId}`)).body.state).toBe("RUNNING");
  });
});

describe("heartbeats", () => {
  it("do not stop a job whose lease only expired (it comes back to this device), but do stop a canceled one", async () => {
    const { deviceId, credential, ref } = await runningJob(1_000);
    await setClock(deviceId, T0 + 2_000);
    await runDurableObjectAlarm(stub(deviceId));
    expect((await call("GET", `/v1/jobs/${ref.jobId}`)).body.state).toBe("QUEUED");
    const beat = await call("POST", "/v1/agent/heartbeat", { token: credential, json: { health: health(), runningJobs: [ref] } });
    expect(beat.body.cancel).toEqual([]);
    await call("POST", `/v1/jobs/${ref.jobId}/cancel`);
    const after = await call("POST", "/v1/agent/heartbeat", { token: credential, json: { health: health(), runningJobs: [ref] } });
    expect(after.body.cancel).toEqual([ref.jobId]);
  });
});

describe("acks over the WebSocket", () => {
  it("answers a `started` message that carries an id", async () => {
    const { deviceId, credential } = await registerDevice();
    const digest = await uploadModule("math");
    const res = await SELF.fetch("https://wasmvisor.test/v1/agent/ws", { headers: { upgrade: "websocket", authorization: `Bearer ${credential}` } });
    const ws = res.webSocket!;
    ws.accept();
    const inbox: any[] = [];
    ws.addEventListener("message", (e) => inbox.push(JSON.parse(e.data as string)));
    const next = async (pred: (m: any) => boolean) => {
      for (let i = 0; i < 100; i++) {
        const hit = inbox.find(pred);
        if (hit) return hit;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`no matching message: ${JSON.stringify(inbox)}`);
    };
    ws.send(JSON.stringify({ t: "credit", free: 1 }));
    const job = (await submit(deviceId, digest, "add32", [1, 1])).body;
    const pushed = await next((m) => m.t === "jobs");
    const ref = { jobId: job.id, leaseToken: pushed.jobs[0].leaseToken };
    ws.send(JSON.stringify({ t: "started", id: 7, started: [ref], held: [] }));
    expect(await next((m) => m.t === "acked")).toEqual({ t: "acked", id: 7, started: 1, held: 0 });
    ws.send(JSON.stringify({ t: "started", id: 8, started: [], held: [ref] }));
    expect(await next((m) => m.t === "acked" && m.id === 8)).toEqual({ t: "acked", id: 8, started: 0, held: 1 });
    ws.close();
  });
});

describe("a result that arrives after its lease ran out", () => {
  it("ends the job it completed instead of letting it run again (a control plane that was down let the lease lapse)", async () => {
    const { deviceId, credential, ref } = await runningJob(1_000);
    // The control plane was away past the lease: it comes back, and the job is queued for another attempt.
    await setClock(deviceId, T0 + 2_000);
    await runDurableObjectAlarm(stub(deviceId));
    expect((await call("GET", `/v1/jobs/${ref.jobId}`)).body).toMatchObject({ state: "QUEUED", attempts: 1 });
    // The agent's result of the run it finished meanwhile still quotes the first lease.
    const late = await call("POST", "/v1/agent/results", {
      token: credential,
      json: { results: [{ ...ref, outcome: "succeeded", result: { value: 2, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 1 }, error: null }] },
    });
    expect(late.body.dispositions ?? late.body).toEqual([{ jobId: ref.jobId, disposition: "accepted" }]);
    expect((await call("GET", `/v1/jobs/${ref.jobId}`)).body).toMatchObject({ state: "SUCCEEDED", result: { value: 2 }, attempts: 1 });
    expect((await poll(credential)).body.jobs).toEqual([]); // nothing left to run again
  });

  it("is still ignored when it is a retryable failure (the next attempt goes on)", async () => {
    const { deviceId, credential, ref } = await runningJob(1_000);
    await setClock(deviceId, T0 + 2_000);
    await runDurableObjectAlarm(stub(deviceId));
    const late = await call("POST", "/v1/agent/results", {
      token: credential,
      json: { results: [{ ...ref, outcome: "timed_out", result: null, error: { kind: "timeout", message: "too slow" } }] },
    });
    expect(late.body.dispositions ?? late.body).toEqual([{ jobId: ref.jobId, disposition: "stale" }]);
    expect((await call("GET", `/v1/jobs/${ref.jobId}`)).body.state).toBe("QUEUED");
  });
});
