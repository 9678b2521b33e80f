/**
 * Forwarding a chain step's output to the next step, from the control plane
 * (devices never reach each other, so chains work behind NAT). A primitive
 * result becomes the next function's first parameter; output files become its
 * input files (wasmiot's rules). A next step on a device here becomes a job on
 * that device with an id derived from this one, so a retried forward never
 * makes two; a next step outside is called over HTTP as a wasmiot supervisor
 * would.
 */
import type { JobResult, NextLink } from "../protocol/job.js";
import { sha256Hex } from "../core/crypto.js";
import { type CallRecord, type JobRow } from "./job-row.js";
import { retryDelayMs } from "../core/timing.js";
import type { Sql } from "./sql-object.js";
import type { Clock } from "../core/clock.js";
import type { Env } from "../platform/env.js";
import { deviceStub } from "../platform/stubs.js";
import { outputKey } from "../platform/r2-keys.js";

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** The next step's job id: the next device's id and 16 characters derived from this job's id. */
export async function chainJobId(nextDevice: string, jobId: string): Promise<string> {
  const hex = await sha256Hex(`chain:${jobId}`);
  let tail = "";
  for (let i = 0; i < 16; i++) tail += BASE32[parseInt(hex.slice(i * 2, i * 2 + 2), 16) & 31];
  return `${nextDevice}-${tail}`;
}

/**
 * Throws when the next step could not be reached at all (the caller retries later).
 * `namespace` is the forwarding device's: the next device refuses a step from another tenant.
 */
export async function forwardStep(env: Env, namespace: string, jobId: string, call: CallRecord, result: JobResult | null): Promise<NextLink> {
  const step = call.next!;
  const files = (result?.files ?? []).map((f) => ({ name: f.name, key: outputKey(jobId, f.name) }));
  const value = call.ctx.result === "none" ? null : (result?.value ?? null);
  if ("device" in step) {
    const nextJob = await chainJobId(step.device, jobId);
    const out = await deviceStub(env, step.device).call(namespace, nextJob, {
      deployment: step.deployment ?? call.ctx.deployment,
      module: step.module,
      function: step.function,
      method: "POST",
      query: {},
      body: {},
      files,
      prev: jobId,
      chained: { value, hasFiles: files.length > 0 },
    });
    if (!out.ok) return { error: `the next step ${step.module}/${step.function} on ${step.device} refused the call: ${out.detail}` };
    // (out.value.job is the next step's job: QUEUED, or FAILED at once when it could not be called)
    return { job: nextJob, ...(step.resultBase ? { url: `${step.resultBase.replace(/\/+$/, "")}/request-history/${nextJob}` } : {}) };
  }
  return forwardOverHttp(env, step, files, value);
}

async function forwardOverHttp(env: Env, step: { url: string; method: "get" | "post"; param?: string }, files: { name: string; key: string }[], value: unknown): Promise<NextLink> {
  const url = new URL(step.url);
  if (files.length === 0 && value !== null && value !== undefined) url.searchParams.set(step.param ?? "param0", String(value));
  let body: FormData | undefined;
  if (files.length > 0) {
    body = new FormData();
    for (const f of files) {
      const obj = await env.MODULES.get(f.key);
      if (obj) body.append(f.name, new Blob([await obj.arrayBuffer()]), f.name);
    }
  }
  let res: Response;
  try {
    res = await fetch(url, { method: files.length > 0 ? "POST" : step.method.toUpperCase(), ...(body ? { body } : {}), signal: AbortSignal.timeout(15_000) });
  } catch (e) {
    return { error: `the next step ${url.origin} could not be reached: ${String(e)}` };
  }
  const answer = (await res.json().catch(() => null)) as { resultUrl?: unknown } | null;
  if (!res.ok || typeof answer?.resultUrl !== "string") return { error: `the next step ${url.origin} answered ${res.status} without a resultUrl` };
  return { url: answer.resultUrl };
}

/**
 * The forwards a device object owes: one row per succeeded chain step until the
 * next step has its output (written in the same transaction as the step's end,
 * so a restart cannot lose one). Run from the object's alarm.
 */
export class ChainForwards {
  constructor(
    private readonly sql: Sql,
    private readonly env: Env,
    private readonly retryBaseMs: number,
    private readonly clock: Clock,
    /** the forwarding device's namespace, which every forwarded call carries */
    private readonly namespace: () => string,
  ) {}

  /** Records that this chain step's output must be handed on. */
  queue(jobId: string, now: number) {
    this.sql.run("INSERT OR IGNORE INTO forwards (job_id, next_try) VALUES (?, ?)", jobId, now);
  }

  nextTry(): number | null {
    return this.sql.one<{ t: number | null }>("SELECT MIN(next_try) AS t FROM forwards")?.t ?? null;
  }

  async run(now: number) {
    for (const f of this.sql.all<{ job_id: string; tries: number }>("SELECT job_id, tries FROM forwards WHERE next_try <= ? LIMIT 32", now)) {
      const row = this.sql.one<JobRow>("SELECT * FROM jobs WHERE id = ?", f.job_id);
      if (!row?.call) {
        this.sql.run("DELETE FROM forwards WHERE job_id = ?", f.job_id);
        continue;
      }
      try {
        const next = await forwardStep(this.env, this.namespace(), row.id, JSON.parse(row.call) as CallRecord, row.result ? (JSON.parse(row.result) as JobResult) : null);
        this.sql.run`UPDATE jobs SET next = ${JSON.stringify(next)}, updated_at = ${this.clock.now()} WHERE id = ${row.id}`;
        this.sql.run("DELETE FROM forwards WHERE job_id = ?", f.job_id);
      } catch (e) {
        const delay = retryDelayMs(f.tries + 1, Math.random(), this.retryBaseMs);
        this.sql.run("UPDATE forwards SET tries = tries + 1, next_try = ? WHERE job_id = ?", this.clock.now() + delay, f.job_id);
        console.warn(JSON.stringify({ level: "warn", msg: "chain forward failed; will retry", jobId: f.job_id, error: String(e) }));
      }
    }
  }
}
