import { describe, expect, it } from "vitest";
import { call, poll, registerDevice, report, submit, uploadModule } from "./helpers.js";

async function setup() {
  const dev = await registerDevice();
  return { ...dev, digest: await uploadModule("math") };
}

describe("two-step create and start (Hero's jobs.create + job.start)", () => {
  it("creates without queueing, then queues on start; start twice is a conflict", async () => {
    const { deviceId, credential, digest } = await setup();
    const created = (await submit(deviceId, digest, "add32", [1, 2], { start: false })).body;
    expect(created.state).toBe("CREATED");
    expect((await poll(credential)).body.jobs).toHaveLength(0);
    expect((await call("POST", `/v1/jobs/${created.id}/start`)).body.state).toBe("QUEUED");
    expect((await poll(credential)).body.jobs[0].jobId).toBe(created.id);
    expect((await call("POST", `/v1/jobs/${created.id}/start`)).status).toBe(409);
  });
});

describe("Idempotency-Key", () => {
  it("answers the same job for the same key and body, 409 for the same key and another body", async () => {
    const { deviceId, digest } = await setup();
    const body = { device: deviceId, module: digest, function: "add32", args: [1, 2] };
    const first = await call("POST", "/v1/jobs", { json: body, headersExtra: { "idempotency-key": "order-42" } });
    expect(first.status).toBe(202);
    const again = await call("POST", "/v1/jobs", { json: body, headersExtra: { "idempotency-key": "order-42" } });
    expect(again.body.id).toBe(first.body.id);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const other = await call("POST", "/v1/jobs", { json: { ...body, args: [2, 2] }, headersExtra: { "idempotency-key": "order-42" } });
    expect(other.status).toBe(409);
    expect((await call("GET", `/v1/devices/${deviceId}`)).body.queue.queued).toBe(1);
  });
});

describe("delete", () => {
  it("deletes an ended job, and refuses one that has not ended", async () => {
    const { deviceId, credential, digest } = await setup();
    const job = (await submit(deviceId, digest, "add32", [1, 2])).body;
    expect((await call("DELETE", `/v1/jobs/${job.id}`)).status).toBe(409);
    const lease = (await poll(credential)).body.jobs[0];
    await report(credential, job.id, lease.leaseToken, 3);
    expect((await call("DELETE", `/v1/jobs/${job.id}`)).status).toBe(200);
    expect((await call("GET", `/v1/jobs/${job.id}`)).status).toBe(404);
  });
});

describe("batch create", () => {
  it("stores up to 1,000 jobs across devices and delivers them in order", async () => {
    const a = await setup();
    const b = await registerDevice("b");
    const jobs = Array.from({ length: 1000 }, (_, i) => ({ device: i % 2 ? b.deviceId : a.deviceId, module: a.digest, function: "add32", args: [i, 1] }));
    const res = await call("POST", "/v1/jobs/batch", { json: { jobs } });
    expect(res.status).toBe(202);
    expect(res.body.jobs).toHaveLength(1000);
    expect(res.body.jobs[0].device).toBe(a.deviceId);
    const delivered = (await poll(a.credential, 256)).body.jobs;
    expect(delivered).toHaveLength(256);
    expect(delivered.map((j: { args: number[] }) => j.args[0]).slice(0, 3)).toEqual([0, 2, 4]);
  });

  it("stores nothing when one job is invalid or one device unknown", async () => {
    const a = await setup();
    const good = { device: a.deviceId, module: a.digest, function: "add32", args: [1, 1] };
    const badArgs = await call("POST", "/v1/jobs/batch", { json: { jobs: [good, { ...good, args: [1] }] } });
    expect(badArgs.status).toBe(400);
    expect(badArgs.body.detail).toMatch(/^jobs\.1:/);
    const unknown = await call("POST", "/v1/jobs/batch", { json: { jobs: [good, { ...good, device: "daaaaaaaaaaaaaaaa" }] } });
    expect(unknown.status).toBe(404);
    expect((await call("GET", `/v1/devices/${a.deviceId}`)).body.queue.queued).toBe(0);
    expect((await call("POST", "/v1/jobs/batch", { json: { jobs: Array(1001).fill(good) } })).status).toBe(400);
  });
});

describe("drain", () => {
  it("gives a drained device no new work, and resumes it", async () => {
    const { deviceId, credential, digest } = await setup();
    expect((await call("POST", `/v1/devices/${deviceId}/drain`)).body.drained).toBe(true);
    const job = (await submit(deviceId, digest, "add32", [1, 2])).body;
    expect((await poll(credential)).body.jobs).toHaveLength(0);
    expect((await call("POST", `/v1/devices/${deviceId}/resume`)).body.drained).toBe(false);
    expect((await poll(credential)).body.jobs[0].jobId).toBe(job.id);
  });
});

describe("job logs in the device object", () => {
  it("keeps lines only from the lease holder, and serves them as JSON and as a finished SSE stream", async () => {
    const { deviceId, credential, digest } = await setup();
    const job = (await submit(deviceId, digest, "add32", [1, 2])).body;
    const lease = (await poll(credential)).body.jobs[0];
    const line = (l: string) => ({ at: Date.now(), stream: "stdout", line: l });
    const stale = await call("POST", "/v1/agent/logs", { token: credential, json: { jobId: job.id, leaseToken: "x".repeat(16), lines: [line("forged")] } });
    expect(stale.body.accepted).toBe(0);
    expect((await call("POST", "/v1/agent/logs", { token: credential, json: { jobId: job.id, leaseToken: lease.leaseToken, lines: [line("one"), line("two")] } })).body.accepted).toBe(2);
    expect((await call("GET", `/v1/jobs/${job.id}/logs`)).body).toMatchObject({ done: false, lines: [{ seq: 1, line: "one" }, { seq: 2, line: "two" }] });
    await report(credential, job.id, lease.leaseToken, 3);
    const sse = await call("GET", `/v1/jobs/${job.id}/logs?follow=1`);
    expect(sse.type).toBe("text/event-stream");
    expect(sse.body).toContain("event: line");
    expect(sse.body).toContain('"line":"two"');
    expect(sse.body).toMatch(/event: end\ndata: \{"state":"SUCCEEDED"\}/);
    expect((await call("GET", "/v1/jobs/dabcdefghijklmnop-abcdefghijklmnop/logs")).status).toBe(404);
  });
});
