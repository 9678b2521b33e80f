import { describe, expect, it } from "vitest";
import { env, runDurableObjectAlarm } from "cloudflare:test";
import { call, health, poll, registerDevice, report, sleep, submit, uploadModule } from "./helpers.js";

// wrangler vars for this project (vitest.config.ts): ACK_TIMEOUT_MS=300, LEASE_GRACE_MS=300,
// HEARTBEAT_TIMEOUT_MS=600, RETRY_BASE_MS=20.
const stub = (deviceId: string) => env.DEVICES.get(env.DEVICES.idFromName(deviceId));

async function setup() {
  const dev = await registerDevice();
  const digest = await uploadModule("math");
  return { ...dev, digest };
}

describe("the device queue", () => {
  it("delivers by priority, then first in first out", async () => {
    const { deviceId, credential, digest } = await setup();
    const ids: string[] = [];
    for (const [i, priority] of [0, 5, 0, 5, -1].entries()) {
      ids.push((await submit(deviceId, digest, "add32", [i, 0], { priority })).body.id);
    }
    const delivered = (await poll(credential, 10)).body.jobs.map((j: { jobId: string }) => j.jobId);
    expect(delivered).toEqual([ids[1], ids[3], ids[0], ids[2], ids[4]]);
  });

  it("answers an open long poll as soon as a job is submitted", async () => {
    const { deviceId, credential, digest } = await setup();
    const waiting = poll(credential, 1, 20);
    await sleep(50);
    const job = (await submit(deviceId, digest, "add32", [2, 3])).body;
    const delivery = (await waiting).body;
    expect(delivery.jobs.map((j: { jobId: string }) => j.jobId)).toEqual([job.id]);
    expect(delivery.jobs[0]).toMatchObject({ function: "add32", args: [2, 3], attempt: 1 });
  });

  it("hands out at most `max` jobs per delivery", async () => {
    const { deviceId, credential, digest } = await setup();
    for (let i = 0; i < 5; i++) await submit(deviceId, digest, "add32", [i, i]);
    expect((await poll(credential, 2)).body.jobs).toHaveLength(2);
    expect((await poll(credential, 10)).body.jobs).toHaveLength(3);
    expect((await poll(credential, 10)).body.jobs).toHaveLength(0);
  });
});

describe("leases", () => {
  it("redelivers a job whose delivery was never acknowledged, with a new lease", async () => {
    const { deviceId, credential, digest } = await setup();
    const job = (await submit(deviceId, digest, "add32", [1, 1])).body;
    const first = (await poll(credential)).body.jobs[0];
    await sleep(350); // past ACK_TIMEOUT_MS
    await runDurableObjectAlarm(stub(deviceId));
    expect((await call("GET", `/v1/jobs/${job.id}`)).body).toMatchObject({ state: "QUEUED", attempts: 1, error: { kind: "lease-expired" } });
    await sleep(60); // past the retry backoff
    const second = (await poll(credential)).body.jobs[0];
    expect(second).toMatchObject({ jobId: job.id, attempt: 2 });
    expect(second.leaseToken).not.toBe(first.leaseToken);
    // The second lease's result ends the job; the first lease's, arriving after it, changes nothing.
    expect((await report(credential, job.id, second.leaseToken, 2)).body.dispositions[0].disposition).toBe("accepted");
    expect((await report(credential, job.id, first.leaseToken, 999)).body.dispositions[0].disposition).toBe("stale");
    expect((await call("GET", `/v1/jobs/${job.id}`)).body).toMatchObject({ state: "SUCCEEDED", attempts: 2, result: { value: 2 } });
  });

  it("extends the lease when the agent acknowledges the start", async () => {
    const { deviceId, credential, digest } = await setup();
    const job = (await submit(deviceId, digest, "add32", [1, 1], { timeoutMs: 5_000 })).body;
    const lease = (await poll(credential)).body.jobs[0];
    const ack = await call("POST", "/v1/agent/acks", { token: credential, json: { started: [{ jobId: job.id, leaseToken: lease.leaseToken }] } });
    expect(ack.body.started).toBe(1);
    await sleep(350);
    await runDurableObjectAlarm(stub(deviceId));
    expect((await call("GET", `/v1/jobs/${job.id}`)).body.state).toBe("RUNNING");
  });

  it("fails a job whose agent keeps vanishing once its attempts are used up", async () => {
    const { deviceId, credential, digest } = await setup();
    const job = (await submit(deviceId, digest, "add32", [1, 1], { maxAttempts: 1 })).body;
    await poll(credential);
    await sleep(350);
    await runDurableObjectAlarm(stub(deviceId));
    expect((await call("GET", `/v1/jobs/${job.id}`)).body).toMatchObject({ state: "FAILED", attempts: 1, error: { kind: "lease-expired" } });
  });
});

describe("results", () => {
  it("accepts a result once; a repeat is a duplicate and changes nothing", async () => {
    const { deviceId, credential, digest } = await setup();
    const job = (await submit(deviceId, digest, "add32", [20, 22])).body;
    const lease = (await poll(credential)).body.jobs[0];
    expect((await report(credential, job.id, lease.leaseToken, 42)).body.dispositions[0].disposition).toBe("accepted");
    const repeat = await report(credential, job.id, lease.leaseToken, 7, "failed", { kind: "trap", message: "x" });
    expect(repeat.status).toBe(200);
    expect(repeat.body.dispositions[0].disposition).toBe("duplicate");
    expect((await call("GET", `/v1/jobs/${job.id}/result`)).body).toMatchObject({ state: "SUCCEEDED", result: { value: 42 } });
  });

  it("wakes a caller blocked on ?wait= when the result arrives, and answers 202 when the wait runs out", async () => {
    const { deviceId, credential, digest } = await setup();
    const job = (await submit(deviceId, digest, "add32", [1, 2])).body;
    expect((await call("GET", `/v1/jobs/${job.id}/result?wait=0.1`)).status).toBe(202);
    const waiting = call("GET", `/v1/jobs/${job.id}/result?wait=10`);
    const lease = (await poll(credential)).body.jobs[0];
    await report(credential, job.id, lease.leaseToken, 3);
    const done = await waiting;
    expect(done.status).toBe(200);
    expect(done.body.result.value).toBe(3);
  });

  it("does not retry a trap; does retry a timeout while attempts remain", async () => {
    const { deviceId, credential, digest } = await setup();
    const trapped = (await submit(deviceId, digest, "trap", [])).body;
    let lease = (await poll(credential)).body.jobs[0];
    await report(credential, trapped.id, lease.leaseToken, null, "failed", { kind: "trap", message: "integer divide by zero" });
    expect((await call("GET", `/v1/jobs/${trapped.id}`)).body).toMatchObject({ state: "FAILED", attempts: 1 });

    const slow = (await submit(deviceId, digest, "add32", [1, 1], { maxAttempts: 2 })).body;
    lease = (await poll(credential)).body.jobs[0];
    await report(credential, slow.id, lease.leaseToken, null, "timed_out", { kind: "timeout", message: "too slow" });
    expect((await call("GET", `/v1/jobs/${slow.id}`)).body.state).toBe("QUEUED");
    await sleep(60);
    lease = (await poll(credential)).body.jobs[0];
    await report(credential, slow.id, lease.leaseToken, null, "timed_out", { kind: "timeout", message: "too slow" });
    expect((await call("GET", `/v1/jobs/${slow.id}`)).body).toMatchObject({ state: "TIMED_OUT", attempts: 2 });
  });

  it("never lets a device report for another device's job", async () => {
    const a = await setup();
    const b = await registerDevice("b");
    const job = (await submit(a.deviceId, a.digest, "add32", [1, 1])).body;
    const lease = (await poll(a.credential)).body.jobs[0];
    const res = await report(b.credential, job.id, lease.leaseToken, 666);
    expect(res.body.dispositions[0].disposition).toBe("stale");
    expect((await call("GET", `/v1/jobs/${job.id}`)).body.state).toBe("LEASED");
  });
});

describe("deadlines, cancel and presence", () => {
  it("expires work whose deadline passes before it starts, without any request arriving", async () => {
    const { deviceId, digest } = await setup();
    const job = (await submit(deviceId, digest, "add32", [1, 1], { deadline: new Date(Date.now() + 200).toISOString() })).body;
    await sleep(250);
    await runDurableObjectAlarm(stub(deviceId));
    expect((await call("GET", `/v1/jobs/${job.id}`)).body).toMatchObject({ state: "EXPIRED", error: { kind: "deadline" } });
  });

  it("cancels a queued job at once and tells the agent to stop a running one", async () => {
    const { deviceId, credential, digest } = await setup();
    const queued = (await submit(deviceId, digest, "add32", [1, 1])).body;
    expect((await call("POST", `/v1/jobs/${queued.id}/cancel`)).body.state).toBe("CANCELED");
    expect((await poll(credential)).body.jobs).toHaveLength(0);
    const running = (await submit(deviceId, digest, "add32", [1, 1])).body;
    const lease = (await poll(credential)).body.jobs[0];
    await call("POST", `/v1/jobs/${running.id}/cancel`);
    const hb = await call("POST", "/v1/agent/heartbeat", { token: credential, json: { health: health(), runningJobs: [{ jobId: running.id, leaseToken: lease.leaseToken }] } });
    expect(hb.body.cancel).toEqual([running.id]);
    expect((await call("POST", `/v1/jobs/${running.id}/cancel`)).status).toBe(409);
  });

  it("turns a silent device offline by its alarm alone", async () => {
    const { deviceId, credential } = await setup();
    await call("POST", "/v1/agent/heartbeat", { token: credential, json: { health: health() } });
    expect((await call("GET", `/v1/devices/${deviceId}`)).body.status).toBe("online");
    await sleep(650); // past HEARTBEAT_TIMEOUT_MS
    await runDurableObjectAlarm(stub(deviceId));
    expect((await call("GET", `/v1/devices/${deviceId}`)).body.status).toBe("offline");
    const listed = (await call("GET", "/v1/devices?limit=500")).body.devices.find((d: { id: string }) => d.id === deviceId);
    expect(listed.status).toBe("offline");
  });
});
