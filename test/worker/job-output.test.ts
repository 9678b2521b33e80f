/**
 * A device object's store of job output (src/durable/job-output.ts), through the real routes:
 * lines posted by the lease holder, bounded per job with one truncation marker, and followers
 * over server-sent events who get the lines so far, new lines as they come, then `end`.
 */
import { describe, expect, it } from "vitest";
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { ADMIN, call, poll, registerDevice, report, submit, uploadModule } from "./helpers.js";
import { LIMITS } from "../../src/protocol/job.js";

const WAIT_MS = 10_000;
const PINNED_NOW = Date.UTC(2026, 0, 1);

const deviceObject = (deviceId: string) => env.DEVICES.get(env.DEVICES.idFromName(deviceId));

async function runningJob() {
  const dev = await registerDevice();
  // The device object's clock stands still: the lease (short in tests) cannot expire while a test posts thousands of lines.
  await runInDurableObject(deviceObject(dev.deviceId), (obj) => obj.clock.set(PINNED_NOW));
  const digest = await uploadModule("math");
  const job = (await submit(dev.deviceId, digest, "add32", [1, 2])).body as { id: string };
  const lease = (await poll(dev.credential)).body.jobs[0] as { jobId: string; leaseToken: string };
  expect(lease.jobId).toBe(job.id);
  const post = async (lines: string[]) => {
    const res = await call("POST", "/v1/agent/logs", {
      token: dev.credential,
      json: { jobId: job.id, leaseToken: lease.leaseToken, lines: lines.map((line) => ({ at: 1_700_000_000_000, stream: "stdout", line })) },
    });
    expect(res.status).toBe(200);
    return res.body.accepted as number;
  };
  return { ...dev, jobId: job.id, leaseToken: lease.leaseToken, post };
}

const numbered = (from: number, count: number) => Array.from({ length: count }, (_, i) => `line ${from + i}`);

/** An open `?follow=1` stream, read event by event with a bounded wait. */
async function follow(jobId: string) {
  const res = await SELF.fetch(`https://wasmvisor.test/v1/jobs/${jobId}/logs?follow=1`, { headers: { authorization: `Bearer ${ADMIN}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/event-stream");
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const queued: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (e) => queued.push(e) });
  let ended = false;
  /** The next `count` events; fails if the stream ends or stays silent for WAIT_MS. */
  const next = async (count: number) => {
    const deadline = Date.now() + WAIT_MS;
    while (queued.length < count) {
      if (ended) throw new Error(`stream ended after ${queued.length} of ${count} events`);
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no event within ${WAIT_MS} ms`)), Math.max(0, deadline - Date.now())));
      const chunk = await Promise.race([reader.read(), timeout]);
      if (chunk.done) ended = true;
      else parser.feed(chunk.value);
    }
    return queued.splice(0, count);
  };
  /** Resolves once the server has closed the stream (nothing more after the events already read). */
  const closed = async () => {
    const rest = await next(0).then(async () => {
      while (!ended) {
        const chunk = await reader.read();
        if (chunk.done) ended = true;
        else parser.feed(chunk.value);
      }
      return queued.splice(0);
    });
    return rest;
  };
  return { next, closed, cancel: () => reader.cancel() };
}

const payload = (e: EventSourceMessage) => JSON.parse(e.data) as Record<string, unknown>;

describe("job output: bounded per job", () => {
  it(`keeps ${LIMITS.maxLogLines} lines, then one truncation marker, then nothing more`, async () => {
    const job = await runningJob();
    for (let i = 0; i < 4; i++) expect(await job.post(numbered(i * 1000 + 1, 1000))).toBe(1000);
    expect(await job.post(numbered(4001, 999))).toBe(999);
    expect(await job.post(numbered(5000, 3))).toBe(1); // one more fits; the rest is cut
    expect(await job.post(numbered(5003, 10))).toBe(0);

    const logs = (await call("GET", `/v1/jobs/${job.jobId}/logs`)).body as { lines: { seq: number; stream: string; line: string }[]; truncated: boolean; done: boolean };
    expect(logs.truncated).toBe(true);
    expect(logs.done).toBe(false);
    expect(logs.lines).toHaveLength(LIMITS.maxLogLines + 1);
    expect(logs.lines.map((l) => l.seq)).toEqual(Array.from({ length: LIMITS.maxLogLines + 1 }, (_, i) => i + 1));
    expect(logs.lines[LIMITS.maxLogLines - 1]).toMatchObject({ stream: "stdout", line: `line ${LIMITS.maxLogLines}` });
    expect(logs.lines[LIMITS.maxLogLines]).toMatchObject({ at: PINNED_NOW, stream: "stderr", line: `[wasmvisor] output truncated after ${LIMITS.maxLogLines} lines` });
  });

  it("a job under the bound is not marked truncated, and the lines keep their order across batches", async () => {
    const job = await runningJob();
    expect(await job.post(["a", "b"])).toBe(2);
    expect(await job.post(["c"])).toBe(1);
    const logs = (await call("GET", `/v1/jobs/${job.jobId}/logs`)).body;
    expect(logs).toMatchObject({ truncated: false, done: false, lines: [{ seq: 1, line: "a" }, { seq: 2, line: "b" }, { seq: 3, line: "c" }] });
  });

  it("removing the job removes its stored lines", async () => {
    const job = await runningJob();
    await job.post(["kept until the job is removed"]);
    await report(job.credential, job.jobId, job.leaseToken, 3);
    const stored = () => runInDurableObject(deviceObject(job.deviceId), (_obj, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM job_logs WHERE job_id = ?", job.jobId).one().n);
    expect(await stored()).toBe(1);
    expect((await call("DELETE", `/v1/jobs/${job.jobId}`)).status).toBeLessThan(300);
    expect(await stored()).toBe(0);
  });
});

describe("job output: followers", () => {
  it("a follower gets the lines so far, new lines as they are posted, then `end` with the state, and the stream closes", async () => {
    const job = await runningJob();
    await job.post(["before"]);
    const follower = await follow(job.jobId);
    const [first] = await follower.next(1);
    expect(first).toMatchObject({ event: "line", id: "1" });
    expect(payload(first!)).toMatchObject({ seq: 1, line: "before" });

    await job.post(["during 1", "during 2"]);
    const live = await follower.next(2);
    expect(live.map((e) => [e.event, e.id, payload(e).line])).toEqual([["line", "2", "during 1"], ["line", "3", "during 2"]]);

    await report(job.credential, job.jobId, job.leaseToken, 3);
    const [end] = await follower.next(1);
    expect(end).toMatchObject({ event: "end", data: JSON.stringify({ state: "SUCCEEDED" }) });
    expect(await follower.closed()).toEqual([]);
  });

  it("every follower of a job gets the same events; one that goes away does not stop the others", async () => {
    const job = await runningJob();
    const stays = await follow(job.jobId);
    const leaves = await follow(job.jobId);
    await job.post(["one"]);
    expect((await stays.next(1))[0]).toMatchObject({ event: "line", id: "1" });
    expect((await leaves.next(1))[0]).toMatchObject({ event: "line", id: "1" });
    await leaves.cancel();
    expect(await job.post(["two"])).toBe(1);
    expect(payload((await stays.next(1))[0]!)).toMatchObject({ seq: 2, line: "two" });
    await call("POST", `/v1/jobs/${job.jobId}/cancel`);
    expect((await stays.next(1))[0]).toMatchObject({ event: "end", data: JSON.stringify({ state: "CANCELED" }) });
    expect(await stays.closed()).toEqual([]);
  });

  it("following a job that has ended answers its lines and `end` at once", async () => {
    const job = await runningJob();
    await job.post(["only"]);
    await report(job.credential, job.jobId, job.leaseToken, 3);
    const follower = await follow(job.jobId);
    const events = await follower.closed();
    expect(events.map((e) => e.event)).toEqual(["line", "end"]);
    expect(payload(events[1]!)).toEqual({ state: "SUCCEEDED" });
  });
});
