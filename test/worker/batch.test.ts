/**
 * POST /v1/jobs/batch is safe to retry (issue 9, hole 13): a client mistake stores
 * nothing on any device, and with an Idempotency-Key a retry answers the same jobs and
 * completes what a part-way failure left undone, never creating a second job.
 */
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { call, registerDevice, uploadModule } from "./helpers.js";

const queued = async (device: string) => (await call("GET", `/v1/devices/${device}`)).body.queue.queued as number;
const job = (device: string, module: string, a: number, extra: Record<string, unknown> = {}) => ({ device, module, function: "add32", args: [a, 1], ...extra });
const batch = (jobs: unknown[], key?: string) => call("POST", "/v1/jobs/batch", { json: { jobs }, headersExtra: key ? { "idempotency-key": key } : {} });

describe("batches are all-or-nothing for client mistakes and idempotent by key", () => {
  it("stores nothing on any device when one job names an unknown device or a passed deadline", async () => {
    const a = (await registerDevice("batch-a")).deviceId;
    const b = (await registerDevice("batch-b")).deviceId;
    const digest = await uploadModule("math");
    const unknown = await batch([job(a, digest, 1), job("dzzzzzzzzzzzzzzzz", digest, 2)], "k-unknown");
    expect(unknown.status).toBe(404);
    const late = await batch([job(a, digest, 1), job(b, digest, 2, { deadline: new Date(Date.now() - 1000).toISOString() })]);
    expect(late.status).toBe(422);
    expect(late.type).toBe("application/problem+json");
    expect(await queued(a)).toBe(0);
    expect(await queued(b)).toBe(0);
    // The key of a refused batch is not spent: the corrected batch goes through with it.
    const fixed = await batch([job(a, digest, 1), job(b, digest, 2)], "k-unknown");
    expect(fixed.status).toBe(202);
  });

  it("answers a retry with the same key and body with the same job ids, and another body with 409", async () => {
    const a = (await registerDevice("batch-same-a")).deviceId;
    const b = (await registerDevice("batch-same-b")).deviceId;
    const digest = await uploadModule("math");
    const jobs = [job(a, digest, 1), job(b, digest, 2), job(a, digest, 3)];
    const first = await batch(jobs, "k-same");
    expect(first.status).toBe(202);
    const again = await batch(jobs, "k-same");
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.body.jobs.map((j: { id: string }) => j.id)).toEqual(first.body.jobs.map((j: { id: string }) => j.id));
    expect(await queued(a)).toBe(2);
    expect(await queued(b)).toBe(1);
    const other = await batch([job(a, digest, 9)], "k-same");
    expect(other.status).toBe(409);
    expect(await queued(a)).toBe(2);
    // Without a key, the same body is a new batch.
    expect((await batch(jobs)).status).toBe(202);
    expect(await queued(a)).toBe(4);
  });

  it("completes a batch that failed part-way when retried with its key, without a second job anywhere", async () => {
    const a = (await registerDevice("batch-part-a")).deviceId;
    const b = (await registerDevice("batch-part-b")).deviceId;
    const digest = await uploadModule("math");
    const deadline = new Date(Date.now() + 60 * 60 * 1000).toISOString();
    const jobs = [job(a, digest, 1), job(b, digest, 2, { deadline }), job(a, digest, 3)];
    // Device b's object refuses its share (its clock says the deadline has passed) after a's share is stored.
    const bObject = env.DEVICES.get(env.DEVICES.idFromName(b));
    await runInDurableObject(bObject, (obj) => obj.clock.set(Date.now() + 2 * 60 * 60 * 1000));
    const first = await batch(jobs, "k-part");
    expect(first.status).toBeGreaterThanOrEqual(400);
    expect(await queued(a)).toBe(2); // what was stored stays stored; the retry completes it
    expect(await queued(b)).toBe(0);
    await runInDurableObject(bObject, (obj) => obj.clock.release());
    const retry = await batch(jobs, "k-part");
    expect(retry.status).toBe(202);
    expect(retry.body.jobs.map((j: { device: string }) => j.device)).toEqual([a, b, a]);
    expect(await queued(a)).toBe(2);
    expect(await queued(b)).toBe(1);
    const again = await batch(jobs, "k-part");
    expect(again.body.jobs.map((j: { id: string }) => j.id)).toEqual(retry.body.jobs.map((j: { id: string }) => j.id));
    expect(await queued(a)).toBe(2);
  });
});
