/**
 * The job listing: one row per job, in creation order, fed by the device objects' index
 * feeds (index-feed.ts). Reads never fan out to device objects; the row can lag the job's
 * own object by a flush (tens of milliseconds), and GET /v1/jobs/:id stays the authority.
 *
 * The index is sharded by a hash of the device id into INDEX_SHARDS objects (a device's
 * jobs all live in one shard, so its feed talks to one object); a listing asks every shard
 * for the page past the same cursor and merges them (src/core/shards.ts). Each row keeps
 * the highest change sequence applied to it, and a deleted job leaves a marker for a while,
 * so a batch that arrives late or twice never moves a job backwards or brings it back.
 */
import { SqlObject } from "./sql-object.js";
import type { IndexRow } from "./job-row.js";
import { isTerminal, type JobState } from "../protocol/job.js";
import { bucketOf } from "../core/metrics.js";
import { shardOf } from "../core/shards.js";
import type { Env } from "../platform/env.js";

const SCHEMA = `
CREATE TABLE jobs (
  id         TEXT PRIMARY KEY,
  namespace  TEXT NOT NULL,
  device     TEXT NOT NULL,
  state      TEXT NOT NULL,
  function   TEXT NOT NULL,
  module     TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX jobs_by_created ON jobs (created_at, id);
CREATE INDEX jobs_by_device ON jobs (device, created_at, id);
CREATE INDEX jobs_by_state ON jobs (state, created_at, id);
CREATE INDEX jobs_by_namespace ON jobs (namespace, created_at, id);`;

/** Per job the highest change applied; deleted jobs' last sequence, kept past any late batch. */
const CHANGE_ORDER = `
ALTER TABLE jobs ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
CREATE TABLE deleted_jobs (id TEXT PRIMARY KEY, change_seq INTEGER NOT NULL, deleted_at INTEGER NOT NULL);
CREATE INDEX deleted_jobs_by_time ON deleted_jobs (deleted_at);`;

/** Idempotency-Keys of job batches: a key names one body for its window (routes/jobs.ts). */
const BATCH_KEYS = `
CREATE TABLE batch_keys (key TEXT PRIMARY KEY, body_hash TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX batch_keys_by_time ON batch_keys (created_at);`;

/**
 * The metrics this shard keeps as its batches apply (GET /metrics reads them; no scrape
 * asks a device object): jobs held by state, jobs ended by state (a counter), QUEUED jobs
 * per device (for the top-k), and latency histograms (`wait`: created -> started, `run`:
 * started -> finished) per namespace. Seeded from the rows already here.
 */
const METRICS = `
ALTER TABLE jobs ADD COLUMN started_at INTEGER;
ALTER TABLE jobs ADD COLUMN finished_at INTEGER;
CREATE TABLE metric_jobs (namespace TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (namespace, state));
CREATE TABLE metric_ended (namespace TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (namespace, state));
CREATE TABLE metric_queue (namespace TEXT NOT NULL, device TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (namespace, device));
CREATE INDEX metric_queue_by_depth ON metric_queue (n DESC);
CREATE TABLE metric_latency (namespace TEXT NOT NULL, metric TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (namespace, metric, bucket));
CREATE TABLE metric_latency_sum (namespace TEXT NOT NULL, metric TEXT NOT NULL, sum_ms INTEGER NOT NULL, PRIMARY KEY (namespace, metric));
INSERT INTO metric_jobs SELECT namespace, state, COUNT(*) FROM jobs GROUP BY namespace, state;
INSERT INTO metric_queue SELECT namespace, device, COUNT(*) FROM jobs WHERE state = 'QUEUED' GROUP BY namespace, device;`;

/** What one shard reports to a scrape (flat, for RPC). */
export interface IndexMetrics {
  jobs: { state: string; n: number }[];
  ended: { state: string; n: number }[];
  queued: number;
  queueTop: { device: string; n: number }[];
  latency: { metric: string; bucket: number; n: number }[];
  latencySums: { metric: string; sumMs: number }[];
}

/** Deltas of one batch, written in a few statements at its end. */
class MetricDeltas {
  jobs = new Map<string, number>();
  ended = new Map<string, number>();
  queue = new Map<string, number>();
  latency = new Map<string, number>();
  sums = new Map<string, number>();
  constructor(private readonly namespace: string, private readonly device: string) {}
  private add(m: Map<string, number>, k: string, d: number) {
    m.set(k, (m.get(k) ?? 0) + d);
  }
  held(state: string, d: number) {
    this.add(this.jobs, state, d);
    if (state === "QUEUED") this.add(this.queue, this.device, d);
  }
  endedIn(state: string) {
    this.add(this.ended, state, 1);
  }
  observe(metric: "wait" | "run", ms: number) {
    const clamped = Math.max(0, ms);
    this.add(this.latency, `${metric}\u0000${bucketOf(clamped)}`, 1);
    this.add(this.sums, metric, clamped);
  }
  /** One upsert per touched key. */
  write(run: (q: string, ...p: (string | number)[]) => number) {
    const ns = this.namespace;
    for (const [state, d] of this.jobs) if (d !== 0) run("INSERT INTO metric_jobs (namespace, state, n) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n", ns, state, d);
    for (const [state, d] of this.ended) run("INSERT INTO metric_ended (namespace, state, n) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n", ns, state, d);
    for (const [device, d] of this.queue) {
      if (d === 0) continue;
      run("INSERT INTO metric_queue (namespace, device, n) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n", ns, device, d);
      run("DELETE FROM metric_queue WHERE namespace = ? AND device = ? AND n <= 0", ns, device);
    }
    for (const [key, d] of this.latency) {
      const [metric, bucket] = key.split("\u0000") as [string, string];
      run("INSERT INTO metric_latency (namespace, metric, bucket, n) VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n", ns, metric, Number(bucket), d);
    }
    for (const [metric, d] of this.sums) run("INSERT INTO metric_latency_sum (namespace, metric, sum_ms) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET sum_ms = sum_ms + excluded.sum_ms", ns, metric, d);
  }
}

type Prior = { state: JobState; change_seq: number; started_at: number | null; finished_at: number | null };

/** How long a deleted job's marker outlives it: far longer than any batch can be in transit. */
const DELETED_MARKER_MS = 60 * 60 * 1000;
const MARKERS_PURGED_PER_BATCH = 500;

export interface JobListItem {
  id: string;
  device: string;
  state: JobState;
  function: string;
  module: string;
  createdAt: string;
  updatedAt: string;
}

/** A listed job with its creation time in milliseconds, the cursor's order. */
export type ListedJob = JobListItem & { createdAtMs: number };

export interface ListQuery {
  /** null: all namespaces */
  namespace: string | null;
  device: string | null;
  status: JobState | null;
  limit: number;
  /** the (created_at, id) of the last row of the previous page */
  after: { createdAt: number; id: string } | null;
}

type Row = { id: string; device: string; state: JobState; function: string; module: string; created_at: number; updated_at: number; change_seq: number };

export class JobIndexObject extends SqlObject<Env> {
  protected migrations() {
    return [SCHEMA, CHANGE_ORDER, BATCH_KEYS, METRICS];
  }

  /**
   * Applies a device's feed batch. A row changes only if its change sequence is higher
   * than what the job has (or had, if it was deleted): batches may be retried or late.
   */
  async apply(device: string, namespace: string, rows: IndexRow[]): Promise<number> {
    const now = this.clock.now();
    const deltas = new MetricDeltas(namespace, device);
    this.ctx.storage.transactionSync(() => {
      for (const r of rows) {
        const prior = this.one<Prior>("SELECT state, change_seq, started_at, finished_at FROM jobs WHERE id = ?", r.job_id);
        if (r.state === "DELETED") {
          if (prior && prior.change_seq < r.change_seq) {
            this.run("DELETE FROM jobs WHERE id = ?", r.job_id);
            deltas.held(prior.state, -1);
          }
          this.run`INSERT INTO deleted_jobs (id, change_seq, deleted_at) VALUES (${r.job_id}, ${r.change_seq}, ${now})
             ON CONFLICT (id) DO UPDATE SET change_seq = MAX(change_seq, excluded.change_seq)`;
          continue;
        }
        if (prior && prior.change_seq >= r.change_seq) continue;
        if (this.one("SELECT 1 AS x FROM deleted_jobs WHERE id = ? AND change_seq >= ?", r.job_id, r.change_seq)) continue;
        const startedAt = r.started_at ?? null;
        const finishedAt = r.finished_at ?? null;
        this.run`INSERT INTO jobs (id, namespace, device, state, function, module, created_at, updated_at, change_seq, started_at, finished_at) VALUES (${r.job_id}, ${namespace}, ${device}, ${r.state}, ${r.function}, ${r.module}, ${r.created_at}, ${r.updated_at}, ${r.change_seq}, ${startedAt}, ${finishedAt})
           ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, change_seq = excluded.change_seq, started_at = excluded.started_at, finished_at = excluded.finished_at
           WHERE excluded.change_seq > jobs.change_seq`;
        if (prior) deltas.held(prior.state, -1);
        deltas.held(r.state, 1);
        if (startedAt !== null && (prior?.started_at ?? null) === null) deltas.observe("wait", startedAt - r.created_at);
        if (isTerminal(r.state as JobState) && !(prior && isTerminal(prior.state))) {
          deltas.endedIn(r.state);
          if (startedAt !== null && finishedAt !== null) deltas.observe("run", finishedAt - startedAt);
        }
      }
      deltas.write((q, ...p) => this.run(q, ...p));
      this.run(
        "DELETE FROM deleted_jobs WHERE id IN (SELECT id FROM deleted_jobs WHERE deleted_at < ? LIMIT ?)",
        now - DELETED_MARKER_MS, MARKERS_PURGED_PER_BATCH,
      );
    });
    return rows.length;
  }

  /** This shard's share of a scrape: counts of one namespace, or of all for null; the `topK` deepest queues. */
  async metrics(namespace: string | null, topK: number): Promise<IndexMetrics> {
    const jobs = this.all<{ state: string; n: number }>`SELECT state, SUM(n) AS n FROM metric_jobs WHERE ${namespace} IS NULL OR namespace = ${namespace} GROUP BY state`;
    return {
      jobs,
      ended: this.all<{ state: string; n: number }>`SELECT state, SUM(n) AS n FROM metric_ended WHERE ${namespace} IS NULL OR namespace = ${namespace} GROUP BY state`,
      queued: jobs.find((j) => j.state === "QUEUED")?.n ?? 0,
      queueTop: this.all<{ device: string; n: number }>`SELECT device, n FROM metric_queue WHERE ${namespace} IS NULL OR namespace = ${namespace} ORDER BY n DESC, device LIMIT ${topK}`,
      latency: this.all<{ metric: string; bucket: number; n: number }>`SELECT metric, bucket, SUM(n) AS n FROM metric_latency WHERE ${namespace} IS NULL OR namespace = ${namespace} GROUP BY metric, bucket`,
      latencySums: this.all<{ metric: string; sumMs: number }>`SELECT metric, SUM(sum_ms) AS sumMs FROM metric_latency_sum WHERE ${namespace} IS NULL OR namespace = ${namespace} GROUP BY metric`,
    };
  }

  /**
   * Binds a batch's Idempotency-Key to its body for `windowMs`: "new" the first time,
   * "replay" for the same body again, "conflict" for another body. A key whose window
   * has passed is free again. (Kept here because the index is already sharded by a hash:
   * the caller picks the shard by a hash of the key.)
   */
  async claimBatchKey(key: string, bodyHash: string, windowMs: number): Promise<"new" | "replay" | "conflict"> {
    const now = this.clock.now();
    const seen = this.one<{ body_hash: string; created_at: number }>("SELECT body_hash, created_at FROM batch_keys WHERE key = ?", key);
    if (seen && seen.created_at + windowMs > now) return seen.body_hash === bodyHash ? "replay" : "conflict";
    this.run`INSERT INTO batch_keys (key, body_hash, created_at) VALUES (${key}, ${bodyHash}, ${now}) ON CONFLICT (key) DO UPDATE SET body_hash = excluded.body_hash, created_at = excluded.created_at`;
    this.run("DELETE FROM batch_keys WHERE key IN (SELECT key FROM batch_keys WHERE created_at < ? LIMIT ?)", now - windowMs, MARKERS_PURGED_PER_BATCH);
    return "new";
  }

  /** The first `limit` + 1 rows past the cursor, in creation order: one shard's share of a listing page. */
  async list(q: ListQuery): Promise<ListedJob[]> {
    const rows = this.all<Row>`SELECT * FROM jobs
       WHERE (${q.namespace} IS NULL OR namespace = ${q.namespace}) AND (${q.device} IS NULL OR device = ${q.device}) AND (${q.status} IS NULL OR state = ${q.status})
         AND (${q.after?.createdAt ?? null} IS NULL OR (created_at, id) > (${q.after?.createdAt ?? null}, ${q.after?.id ?? null}))
       ORDER BY created_at, id LIMIT ${q.limit + 1}`;
    return rows.map((r) => ({
      id: r.id, device: r.device, state: r.state, function: r.function, module: r.module,
      createdAt: new Date(r.created_at).toISOString(), updatedAt: new Date(r.updated_at).toISOString(), createdAtMs: r.created_at,
    }));
  }
}

/** Registers this class as the one behind the JOB_INDEX binding (see src/platform/env.ts). */
declare module "../platform/env.js" {
  interface DurableObjectClasses {
    JOB_INDEX: JobIndexObject;
  }
}
