/** The outbox keeps every result until the control plane acknowledges it, whatever the control plane answers. */
import { afterEach, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fitReport, HEALTH_SAMPLE_MSG, Outbox, type HealthSample } from "./outbox.js";
import { ApiError } from "./api-client.js";
import type { AgentLogLine, ResultReport } from "../protocol/agent.js";
import { ResultBatch } from "../protocol/agent.js";

const KIB = 1024;
const outboxes: Outbox[] = [];
afterEach(() => {
  for (const o of outboxes.splice(0)) o.stop();
});

/** A well-formed job id, numbered. */
const jobId = (i: number) => `daaaaaaaaaaaaaaaa-${"a".repeat(15)}${"abcdefghijklmnopqrstuvwxyz234567"[i]}`;

function report(i: number, stdoutBytes = 64 * KIB, stderrBytes = 64 * KIB): ResultReport {
  return {
    jobId: jobId(i),
    leaseToken: `lease-${i}`,
    outcome: "succeeded",
    result: { value: i, exitCode: null, stdout: "o".repeat(stdoutBytes), stderr: "e".repeat(stderrBytes), stdoutTruncated: false, stderrTruncated: false, durationMs: 1 },
    error: null,
    logs: [],
  };
}

/** A control plane answering like the real one: 413 over its body limit, or whatever `answer` says first. */
class FakeControlPlane {
  readonly received = new Map<string, ResultReport>();
  readonly bodies: number[] = [];
  constructor(private readonly bodyLimit: number, public answer: (() => Error | null) = () => null) {}
  send = async (batch: ResultReport[]) => {
    const body = JSON.stringify({ results: batch });
    this.bodies.push(Buffer.byteLength(body));
    const refusal = this.answer();
    if (refusal) throw refusal;
    if (Buffer.byteLength(body) > this.bodyLimit) throw new ApiError(413, { title: "too large" }, "report");
    ResultBatch.parse(JSON.parse(body));
    for (const r of batch) this.received.set(r.jobId, r);
  };
}

function outbox(cp: FakeControlPlane, opts: ConstructorParameters<typeof Outbox>[3] = {}) {
  const dir = mkdtempSync(join(tmpdir(), "wv-outbox-"));
  const lines: string[] = [];
  const o = new Outbox(dir, cp.send, (_l, msg) => lines.push(msg), { retryDelayMs: () => 5, ...opts });
  outboxes.push(o);
  return { o, dir, lines };
}

const until = async (what: string, pred: () => boolean) => {
  for (let i = 0; i < 400; i++) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
};

describe("Outbox", () => {
  it("delivers reports of 64 KiB stdout + 64 KiB stderr in batches that fit a 256 KiB body limit", async () => {
    const cp = new FakeControlPlane(256 * KIB);
    const { o, lines } = outbox(cp);
    for (let i = 0; i < 10; i++) o.add(report(i));
    await until("all delivered", () => cp.received.size === 10);
    expect(o.size).toBe(0);
    expect(Math.max(...cp.bodies)).toBeLessThanOrEqual(256 * KIB);
    expect(lines.filter((l) => l.includes("dropping"))).toEqual([]);
  });

  it("learns a smaller limit from a 413 and still delivers everything", async () => {
    const cp = new FakeControlPlane(100 * KIB);
    const { o } = outbox(cp);
    for (let i = 0; i < 6; i++) o.add(report(i, 30 * KIB, 30 * KIB));
    await until("all delivered", () => cp.received.size === 6);
    expect([...cp.received.values()].every((r) => r.result!.stdout.length === 30 * KIB && !r.result!.stdoutTruncated)).toBe(true);
  });

  it("cuts a single report that cannot fit any request, marked truncated, and never drops it", async () => {
    const cp = new FakeControlPlane(256 * KIB);
    const { o } = outbox(cp);
    const big = report(1, 200 * KIB, 200 * KIB);
    big.logs = Array.from({ length: 100 }, (_, i) => ({ at: i, stream: "stdout" as const, line: "l".repeat(4000) }));
    o.add(big);
    await until("delivered", () => cp.received.size === 1);
    const got = cp.received.get(jobId(1))!;
    expect(got.result!.stdout.length + got.result!.stderr.length).toBeGreaterThan(128 * KIB);
    expect(got.result!.stdout.length < 200 * KIB || got.result!.stderr.length < 200 * KIB).toBe(true);
    expect(got.result!.stdoutTruncated || got.result!.stderrTruncated).toBe(true);
    expect(got.logs.at(-1)!.line).toMatch(/output lines dropped/);
    expect(got.result!.value).toBe(1);
  });

  it.each([
    ["a 400", () => new ApiError(400, { title: "bad" }, "report")],
    ["a 401", () => new ApiError(401, { title: "unauthenticated" }, "report")],
    ["a 403", () => new ApiError(403, { title: "forbidden" }, "report")],
    ["a 500", () => new ApiError(500, { title: "internal" }, "report")],
    ["a 503", () => new ApiError(503, { title: "unavailable" }, "report")],
    ["a connection failure", () => new TypeError("fetch failed")],
  ])("keeps results through %s and delivers them once the control plane accepts", async (_name, refusal) => {
    let refusals = 3;
    const cp = new FakeControlPlane(256 * KIB, () => (refusals-- > 0 ? refusal() : null));
    const { o, dir } = outbox(cp);
    for (let i = 0; i < 3; i++) o.add(report(i, 10, 10));
    await until("a refusal persisted", () => existsSync(join(dir, "outbox.json")));
    expect((JSON.parse(readFileSync(join(dir, "outbox.json"), "utf8")) as { results: unknown[] }).results.length).toBeGreaterThan(0);
    await until("all delivered", () => cp.received.size === 3);
    expect(o.size).toBe(0);
    await until("the file removed", () => !existsSync(join(dir, "outbox.json")));
  });

  it("does not let one refused report hold up the others", async () => {
    const cp = new FakeControlPlane(256 * KIB);
    const poisoned = new Set([jobId(0)]);
    cp.answer = () => null;
    const send = cp.send;
    cp.send = async (batch) => {
      if (batch.some((r) => poisoned.has(r.jobId))) throw new ApiError(422, { title: "no" }, "report");
      return send(batch);
    };
    const { o } = outbox(cp);
    for (let i = 0; i < 5; i++) o.add(report(i, 10, 10));
    await until("the others delivered", () => cp.received.size === 4);
    expect(o.size).toBe(1); // still kept, still retried
    poisoned.clear();
    await until("the last delivered", () => cp.received.size === 5);
  });

  it("sends a waiting result under the new lease when its job is delivered again", async () => {
    let down = true;
    const cp = new FakeControlPlane(256 * KIB, () => (down ? new TypeError("fetch failed") : null));
    const { o } = outbox(cp);
    o.add(report(3, 10, 10));
    await until("a failed try", () => cp.bodies.length > 0);
    expect(o.retoken(jobId(3), "lease-3-again")).toBe(true);
    expect(o.retoken(jobId(4), "lease-4")).toBe(false);
    down = false;
    await until("delivered", () => cp.received.has(jobId(3)));
    expect(cp.received.get(jobId(3))!.leaseToken).toBe("lease-3-again");
  });

  it("restores results written to disk and sends them", async () => {
    let down = true;
    const cp = new FakeControlPlane(256 * KIB, () => (down ? new TypeError("fetch failed") : null));
    const { o, dir } = outbox(cp);
    o.add(report(7, 10, 10));
    await until("persisted", () => existsSync(join(dir, "outbox.json")));
    o.stop();
    down = false;
    const again = new Outbox(dir, cp.send, () => undefined, { retryDelayMs: () => 5 });
    outboxes.push(again);
    await again.restore();
    void again.flush(); // the agent flushes once its session is open
    await until("delivered", () => cp.received.has(jobId(7)));
  });
});

const sample = (at: number): HealthSample => ({
  at,
  health: { cpuPercent: 1, memoryUsedBytes: 1, memoryTotalBytes: 2, loadAverage: [0, 0, 0], uptimeSeconds: 1, diskFreeBytes: 1, jobsRunning: 0, degraded: { since: new Date(0).toISOString(), reason: "fetch failed" } },
});
const line = (at: number, msg = `line ${at}`): AgentLogLine => ({ at, level: "info", msg });

describe("store and forward while the control plane is away", () => {
  it("writes a result to disk as soon as it comes while the link is down (a crash right after loses nothing)", async () => {
    const cp = new FakeControlPlane(256 * KIB, () => new TypeError("fetch failed"));
    const { o, dir } = outbox(cp, { retryDelayMs: () => 60_000 });
    o.setOffline(true);
    o.add(report(1, 10, 10));
    await o.persist(); // the write under way
    const saved = JSON.parse(readFileSync(join(dir, "outbox.json"), "utf8")) as { results: ResultReport[] };
    expect(saved.results.map((r) => r.jobId)).toEqual([jobId(1)]);
    expect(existsSync(join(dir, "outbox.json.tmp"))).toBe(false); // renamed into place, nothing half-written left
  });

  it("keeps health samples and log lines of the outage on disk and hands them to heartbeats oldest first, once", async () => {
    const cp = new FakeControlPlane(256 * KIB);
    const { o, dir } = outbox(cp);
    o.keepWhileAway(sample(10), [line(5), line(11)]);
    o.keepWhileAway(sample(20), [line(19)]);
    await o.persist();
    // A power loss: another process restores what was written.
    const again = new Outbox(dir, cp.send, () => undefined);
    outboxes.push(again);
    await again.restore();
    const lines = again.backlog(3);
    expect(lines.map((l) => [l.at, l.msg])).toEqual([[5, "line 5"], [10, HEALTH_SAMPLE_MSG], [11, "line 11"]]);
    expect(JSON.parse(lines[1]!.fields!)).toMatchObject({ cpuPercent: 1, degraded: { reason: "fetch failed" } });
    again.backlogShipped(3);
    expect(again.backlog(10).map((l) => l.at)).toEqual([19, 20]);
    again.backlogShipped(2);
    expect(again.backlogSize).toBe(0);
    await again.persist();
    expect(existsSync(join(dir, "outbox.json"))).toBe(false);
  });

  it("over its quota drops the oldest health samples first, then the oldest log lines, never results", async () => {
    const cp = new FakeControlPlane(256 * KIB, () => new TypeError("fetch failed"));
    const messages: string[] = [];
    const dir = mkdtempSync(join(tmpdir(), "wv-outbox-"));
    const o = new Outbox(dir, cp.send, (_l, msg) => messages.push(msg), { retryDelayMs: () => 60_000, quotaBytes: 4 * KIB });
    outboxes.push(o);
    o.setOffline(true);
    for (let i = 0; i < 10; i++) o.keepWhileAway(sample(100 + i), [line(100 + i, "x".repeat(200))]);
    await o.persist();
    const kept = () => JSON.parse(readFileSync(join(dir, "outbox.json"), "utf8")) as { results: ResultReport[]; logs: AgentLogLine[]; health: HealthSample[] };
    expect(readFileSync(join(dir, "outbox.json")).length).toBeLessThanOrEqual(4 * KIB);
    // Health went first: the newest samples are the ones left, and every log line still fits or only the oldest went.
    const first = kept();
    expect(first.health.length).toBeLessThan(10);
    expect(first.health.at(-1)!.at).toBe(109);
    expect(first.logs.at(-1)!.at).toBe(109);
    // Results push out the rest: all health, then log lines; the results themselves all stay.
    for (let i = 0; i < 3; i++) o.add(report(i, 600, 0));
    await o.persist();
    const second = kept();
    expect(second.results.map((r) => r.jobId)).toEqual([jobId(0), jobId(1), jobId(2)]);
    expect(second.health).toEqual([]);
    expect(second.logs.length).toBeLessThan(first.logs.length);
    expect(o.overQuota).toBe(false);
    expect(messages).toContain("outbox over its quota: dropped the oldest health samples and log lines");
  });

  it("keeps every result when results alone exceed the quota, and says so (the agent takes no new jobs) until they are delivered", async () => {
    let down = true;
    const cp = new FakeControlPlane(256 * KIB, () => (down ? new TypeError("fetch failed") : null));
    const messages: string[] = [];
    const dir = mkdtempSync(join(tmpdir(), "wv-outbox-"));
    const o = new Outbox(dir, cp.send, (_l, msg) => messages.push(msg), { retryDelayMs: () => 5, quotaBytes: 2 * KIB });
    outboxes.push(o);
    o.setOffline(true);
    o.keepWhileAway(sample(1), [line(1)]);
    for (let i = 0; i < 4; i++) o.add(report(i, 1000, 0));
    await o.persist();
    const saved = JSON.parse(readFileSync(join(dir, "outbox.json"), "utf8")) as { results: ResultReport[]; logs: unknown[]; health: unknown[] };
    expect(saved.results).toHaveLength(4);
    expect(saved.logs).toEqual([]);
    expect(saved.health).toEqual([]);
    expect(o.overQuota).toBe(true);
    expect(messages).toContain("results alone exceed the outbox quota: all are kept, and no new jobs are taken until they are delivered");
    down = false;
    await until("all delivered", () => cp.received.size === 4);
    await until("back under the quota", () => !o.overQuota);
  });

  it("sets an unreadable file aside instead of failing to start", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wv-outbox-"));
    writeFileSync(join(dir, "outbox.json"), "{not json");
    const cp = new FakeControlPlane(256 * KIB);
    const o = new Outbox(dir, cp.send, () => undefined);
    outboxes.push(o);
    await o.restore();
    expect(o.size).toBe(0);
    expect(readdirSync(dir).some((f) => f.startsWith("outbox.json.unreadable-"))).toBe(true);
  });

  it("reads an older agent's file (results only)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wv-outbox-"));
    writeFileSync(join(dir, "outbox.json"), JSON.stringify([report(2, 10, 10)]));
    const cp = new FakeControlPlane(256 * KIB);
    const o = new Outbox(dir, cp.send, () => undefined, { retryDelayMs: () => 5 });
    outboxes.push(o);
    await o.restore();
    void o.flush();
    await until("delivered", () => cp.received.has(jobId(2)));
  });
});

describe("fitReport", () => {
  it("leaves a report that fits untouched", () => {
    const r = report(1, 10, 10);
    expect(fitReport(r, 10 * KIB)).toBe(r);
  });

  it("cuts multi-byte output to fit in bytes", () => {
    const r = report(1, 0, 0);
    r.result!.stdout = "é".repeat(100 * KIB);
    const cut = fitReport(r, 64 * KIB);
    expect(Buffer.byteLength(JSON.stringify(cut))).toBeLessThanOrEqual(64 * KIB);
    expect(cut.result!.stdoutTruncated).toBe(true);
    expect(cut.result!.stdout.length).toBeGreaterThan(20 * KIB);
  });
});
