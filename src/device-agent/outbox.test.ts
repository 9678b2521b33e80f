/** The outbox keeps every result until the control plane acknowledges it, whatever the control plane answers. */
import { afterEach, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fitReport, Outbox } from "./outbox.js";
import { ApiError } from "./api-client.js";
import type { ResultReport } from "../protocol/agent.js";
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
    expect((JSON.parse(readFileSync(join(dir, "outbox.json"), "utf8")) as unknown[]).length).toBeGreaterThan(0);
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
    await until("delivered", () => cp.received.has(jobId(7)));
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
