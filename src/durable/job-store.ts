/**
 * The job store: the reads of a device object's jobs table (rows, views, what is due,
 * counts, calls), its idempotency keys, and the minting of job ids. It never changes a
 * job's state: that is the life cycle's (job-lifecycle.ts), the one writer of `state`.
 */
import type { Sql } from "./sql-object.js";
import { jobView, type CallRecord, type JobRow } from "./job-row.js";
import { JobIdMinter } from "../protocol/ids.js";
import { isTerminal, type JobResult, type JobState, type JobView } from "../protocol/job.js";

export class JobStore {
  private readonly jobIds = new JobIdMinter();

  constructor(private readonly sql: Sql) {}

  row(jobId: string): JobRow | undefined {
    return this.sql.one<JobRow>("SELECT * FROM jobs WHERE id = ?", jobId);
  }

  view(jobId: string, deviceId: string): JobView | undefined {
    const row = this.row(jobId);
    return row ? jobView(row, deviceId) : undefined;
  }

  state(jobId: string): JobState | undefined {
    return this.sql.one<{ state: JobState }>("SELECT state FROM jobs WHERE id = ?", jobId)?.state;
  }

  /** Whether `leaseToken` is the current lease of a job being run (leased or running). */
  /** Whether the job is over here (ended, or deleted). */
  hasEnded(jobId: string): boolean {
    const row = this.sql.one<{ state: JobState }>("SELECT state FROM jobs WHERE id = ?", jobId);
    return row === undefined || isTerminal(row.state);
  }

  holdsLease(jobId: string, leaseToken: string): boolean {
    const row = this.sql.one<{ state: JobState; lease_token: string | null }>("SELECT state, lease_token FROM jobs WHERE id = ?", jobId);
    return row !== undefined && row.lease_token === leaseToken && (row.state === "LEASED" || row.state === "RUNNING");
  }

  /**
   * A new id for a job of this device. Only this object mints its device's job ids, and its
   * minter never repeats itself; an id from an earlier life of the object (the minter starts
   * afresh after an eviction, and the wall clock may have stepped back) is skipped.
   */
  newJobId(deviceId: string, now: number): string {
    for (;;) {
      const id = this.jobIds.next(deviceId, now);
      if (!this.sql.one("SELECT 1 AS x FROM jobs WHERE id = ?", id)) return id;
    }
  }

  /** Whether a queued job is ready by `now` (a new job then waits its turn behind it). */
  anyReady(now: number): boolean {
    return this.sql.one("SELECT 1 AS x FROM jobs WHERE state = 'QUEUED' AND not_before <= ? LIMIT 1", now) !== undefined;
  }

  /** Queued jobs ready by `now`, highest priority first, then in order of arrival. */
  ready(now: number, max: number): JobRow[] {
    return this.sql.all<JobRow>("SELECT * FROM jobs WHERE state = 'QUEUED' AND not_before <= ? ORDER BY priority DESC, seq LIMIT ?", now, max);
  }

  leasesExpiredBy(now: number): JobRow[] {
    return this.sql.all<JobRow>("SELECT * FROM jobs WHERE state IN ('LEASED', 'RUNNING') AND lease_expires <= ?", now);
  }

  deadlinesPassedBy(now: number): JobRow[] {
    return this.sql.all<JobRow>("SELECT * FROM jobs WHERE state IN ('CREATED', 'QUEUED') AND deadline <= ?", now);
  }

  /** Calls of a deployment that have not started. */
  waitingCalls(deployment: string): JobRow[] {
    return this.sql.all<JobRow>("SELECT * FROM jobs WHERE deployment = ? AND state IN ('CREATED', 'QUEUED')", deployment);
  }

  /** The alarm's times for jobs: the earliest lease expiry, deadline and retry. */
  dueTimes(now: number): (number | null)[] {
    const min = (q: string, ...p: SqlStorageValue[]) => this.sql.one<{ t: number | null }>(q, ...p)?.t ?? null;
    return [
      min("SELECT MIN(lease_expires) AS t FROM jobs WHERE state IN ('LEASED', 'RUNNING')"),
      min("SELECT MIN(deadline) AS t FROM jobs WHERE state IN ('CREATED', 'QUEUED')"),
      min("SELECT MIN(not_before) AS t FROM jobs WHERE state = 'QUEUED' AND not_before > ?", now),
    ];
  }

  /** How many jobs wait and how many run (the device view's queue). */
  queueCounts(): { queued: number; running: number } {
    const counts = this.sql.all<{ state: JobState; n: number }>(
      "SELECT state, COUNT(*) AS n FROM jobs WHERE state IN ('QUEUED', 'LEASED', 'RUNNING') GROUP BY state",
    );
    const count = (s: JobState) => counts.find((c) => c.state === s)?.n ?? 0;
    return { queued: count("QUEUED"), running: count("LEASED") + count("RUNNING") };
  }

  // ---- idempotency keys ------------------------------------------------------------

  /** The job an Idempotency-Key created, with the hash of the request that created it. */
  idempotent(key: string): { body_hash: string; job_id: string } | undefined {
    return this.sql.one<{ body_hash: string; job_id: string }>("SELECT body_hash, job_id FROM idempotency WHERE key = ?", key);
  }

  rememberIdempotent(key: string, bodyHash: string, jobId: string, now: number) {
    this.sql.run`INSERT INTO idempotency (key, body_hash, job_id, created_at) VALUES (${key}, ${bodyHash}, ${jobId}, ${now})`;
  }

  // ---- calls of deployed functions ---------------------------------------------------

  /** The call a job records (null: not a call of a deployed function). */
  callOf(jobId: string): CallRecord | null {
    const row = this.row(jobId);
    return row?.call ? (JSON.parse(row.call) as CallRecord) : null;
  }

  /** Calls of deployed functions, newest first (or the one call `jobId`). */
  calls(limit: number, jobId: string | null): JobRow[] {
    return jobId
      ? this.sql.all<JobRow>("SELECT * FROM jobs WHERE id = ? AND call IS NOT NULL", jobId)
      : this.sql.all<JobRow>("SELECT * FROM jobs WHERE call IS NOT NULL ORDER BY seq DESC LIMIT ?", limit);
  }

  /** The newest succeeded call of `module` (and `fn`) that wrote file `name`. */
  latestOutput(module: string, fn: string | null, name: string): string | null {
    const rows = this.sql.all<{ id: string; result: string | null }>`SELECT id, result FROM jobs WHERE state = 'SUCCEEDED' AND call IS NOT NULL AND json_extract(call, '$.ctx.module') = ${module}
         AND (${fn} IS NULL OR function = ${fn}) ORDER BY seq DESC LIMIT 50`;
    return rows.find((r) => r.result && (JSON.parse(r.result) as JobResult).files?.some((f) => f.name === name))?.id ?? null;
  }
}
