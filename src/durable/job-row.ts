/** The jobs table of a device object, and its mapping to the API's JobView. */
import { jobLinks, type JobError, type JobResult, type JobState, type JobView, type NextLink } from "../protocol/job.js";
import type { CallContext, NextStep } from "../protocol/deployment.js";
import type { Arg } from "../protocol/wasm.js";
import { iso } from "../core/time.js";

export const JOBS_TABLE = `
CREATE TABLE jobs (
  seq           INTEGER PRIMARY KEY AUTOINCREMENT,
  id            TEXT NOT NULL UNIQUE,
  state         TEXT NOT NULL,
  priority      INTEGER NOT NULL,
  module        TEXT NOT NULL,
  function      TEXT NOT NULL,
  args          TEXT NOT NULL,
  timeout_ms    INTEGER NOT NULL,
  attempts      INTEGER NOT NULL DEFAULT 0,
  max_attempts  INTEGER NOT NULL,
  deadline      INTEGER,
  not_before    INTEGER NOT NULL DEFAULT 0,
  lease_token   TEXT,
  lease_expires INTEGER,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  started_at    INTEGER,
  finished_at   INTEGER,
  result        TEXT,
  error         TEXT
);
CREATE INDEX jobs_ready ON jobs (state, priority DESC, seq);
CREATE INDEX jobs_lease ON jobs (lease_expires) WHERE lease_expires IS NOT NULL;
CREATE INDEX jobs_deadline ON jobs (deadline) WHERE deadline IS NOT NULL;
`;

/** Idempotency-Key -> the job it created, with a hash of the request that created it. */
export const IDEMPOTENCY_TABLE = `
CREATE TABLE idempotency (
  key        TEXT PRIMARY KEY,
  body_hash  TEXT NOT NULL,
  job_id     TEXT NOT NULL,
  created_at INTEGER NOT NULL
);`;

export type JobRow = {
  seq: number;
  id: string;
  state: JobState;
  priority: number;
  module: string;
  function: string;
  args: string;
  timeout_ms: number;
  attempts: number;
  max_attempts: number;
  deadline: number | null;
  not_before: number;
  lease_token: string | null;
  lease_expires: number | null;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
  result: string | null;
  error: string | null;
  /** JSON CallRecord: set on calls of deployed functions */
  call: string | null;
  /** JSON NextLink: where a chain step's output went */
  next: string | null;
  deployment: string | null;
  /** W3C traceparent of the submitting request */
  traceparent?: string | null;
};

/** What a call of a deployed function keeps beside its job. */
export interface CallRecord {
  ctx: CallContext;
  function: string;
  method: string;
  /** input files: name and where the control plane keeps the bytes */
  inputs: { name: string; key: string }[];
  /** the arguments as the caller named them (wasmiot's request_args) */
  shown: Record<string, string>;
  next: NextStep | null;
  /** the chain step before this one */
  prev: string | null;
}

export const outputUrl = (jobId: string, name: string) => `/v1/jobs/${jobId}/outputs/${encodeURIComponent(name)}`;

/** Columns added for deployments: a job may be a call, and a chain step links to the next. */
export const CALL_COLUMNS = `
ALTER TABLE jobs ADD COLUMN call TEXT;
ALTER TABLE jobs ADD COLUMN next TEXT;
ALTER TABLE jobs ADD COLUMN deployment TEXT;
CREATE INDEX jobs_deployment ON jobs (deployment, seq) WHERE deployment IS NOT NULL;
CREATE TABLE forwards (job_id TEXT PRIMARY KEY, next_try INTEGER NOT NULL, tries INTEGER NOT NULL DEFAULT 0);`;


export function jobView(row: JobRow, deviceId: string): JobView {
  const call = row.call ? (JSON.parse(row.call) as CallRecord) : null;
  const result = row.result ? (JSON.parse(row.result) as JobResult) : null;
  const extra: Partial<JobView> = {};
  if (call) {
    extra.call = { deployment: call.ctx.deployment, module: call.ctx.module, instance: call.ctx.instance, hasNext: call.next !== null, prev: call.prev };
    extra.outputs = (result?.files ?? []).map((f) => ({
      ...f,
      mediaType: call.ctx.outputs.find((o) => o.name === f.name)?.mediaType ?? "application/octet-stream",
      url: outputUrl(row.id, f.name),
    }));
  }
  if (row.next) extra.next = JSON.parse(row.next) as NextLink;
  return {
    id: row.id,
    device: deviceId,
    state: row.state,
    module: row.module,
    function: row.function,
    args: JSON.parse(row.args) as Arg[],
    priority: row.priority,
    timeoutMs: row.timeout_ms,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    deadline: iso(row.deadline),
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
    traceId: row.traceparent ? row.traceparent.split("-")[1] ?? null : null,
    result,
    error: row.error ? (JSON.parse(row.error) as JobError) : null,
    links: jobLinks(row.id),
    ...extra,
  };
}

/** Output lines of each job, in order; bounded by LIMITS.maxLogLines (a last row marks truncation). */
export const JOB_LOGS_TABLE = `
CREATE TABLE job_logs (
  job_id TEXT NOT NULL,
  seq    INTEGER NOT NULL,
  at     INTEGER NOT NULL,
  stream TEXT NOT NULL,
  line   TEXT NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;`;

/**
 * The job index is fed from the jobs table itself: every state change stamps the row
 * with the next `change_seq` (a per-object counter, so strictly increasing, written in
 * the same statement as the change), the feed sends rows past the last sequence the
 * index acknowledged, and a deleted job leaves a tombstone with its own sequence.
 * (Trigger-written change logs were tried first and cost as much as the jobs themselves:
 * docs/design.md.)
 */
export const INDEX_FEED_TABLES = `
ALTER TABLE jobs ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_by_change ON jobs (change_seq);
CREATE TABLE index_tombstones (change_seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL);
CREATE TABLE index_state (id INTEGER PRIMARY KEY CHECK (id = 1), sent_seq INTEGER NOT NULL);
INSERT INTO index_state (id, sent_seq) VALUES (1, 0);`;

/** One job's listing row as the feed sends it; `change_seq` orders the changes of one job (state DELETED: a tombstone). */
export type IndexRow = {
  job_id: string; state: string; function: string; module: string; created_at: number; updated_at: number; change_seq: number;
  /** for the index's latency histograms (docs/observability.md); absent from feeds older than them */
  started_at?: number | null; finished_at?: number | null;
};
