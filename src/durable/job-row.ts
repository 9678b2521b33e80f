/** The jobs table of a device object, and its mapping to the API's JobView. */
import { jobLinks, type JobError, type JobResult, type JobState, type JobView } from "../protocol/job.js";
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
};


export function jobView(row: JobRow, deviceId: string): JobView {
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
    result: row.result ? (JSON.parse(row.result) as JobResult) : null,
    error: row.error ? (JSON.parse(row.error) as JobError) : null,
    links: jobLinks(row.id),
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
 * What the job index has not yet acknowledged: an append-only log of job changes.
 * Triggers write it in the same transaction as every change to `jobs`, so no state
 * change can miss the index; the device object sends it in batches (latest change
 * per job), then deletes up to the last entry sent. Plain INSERTs keep this cheap:
 * an earlier version replaced one row per job and cost more than the jobs themselves.
 */
const INDEX_LOG = `
CREATE TABLE index_outbox (
  seq        INTEGER PRIMARY KEY,
  job_id     TEXT NOT NULL,
  state      TEXT NOT NULL,
  function   TEXT NOT NULL,
  module     TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TRIGGER jobs_index_insert AFTER INSERT ON jobs BEGIN
  INSERT INTO index_outbox (job_id, state, function, module, created_at, updated_at)
    VALUES (NEW.id, NEW.state, NEW.function, NEW.module, NEW.created_at, NEW.updated_at);
END;
CREATE TRIGGER jobs_index_update AFTER UPDATE OF state ON jobs BEGIN
  INSERT INTO index_outbox (job_id, state, function, module, created_at, updated_at)
    VALUES (NEW.id, NEW.state, NEW.function, NEW.module, NEW.created_at, NEW.updated_at);
END;
CREATE TRIGGER jobs_index_delete AFTER DELETE ON jobs BEGIN
  INSERT INTO index_outbox (job_id, state, function, module, created_at, updated_at)
    VALUES (OLD.id, 'DELETED', OLD.function, OLD.module, OLD.created_at, OLD.updated_at);
END;`;

/** The first outbox (one replaced row per job); kept because migrations run in order. */
export const INDEX_OUTBOX = `
CREATE TABLE index_outbox (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id     TEXT NOT NULL UNIQUE,
  state      TEXT NOT NULL,
  function   TEXT NOT NULL,
  module     TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TRIGGER jobs_index_insert AFTER INSERT ON jobs BEGIN
  INSERT OR REPLACE INTO index_outbox (job_id, state, function, module, created_at, updated_at)
    VALUES (NEW.id, NEW.state, NEW.function, NEW.module, NEW.created_at, NEW.updated_at);
END;
CREATE TRIGGER jobs_index_update AFTER UPDATE OF state ON jobs BEGIN
  INSERT OR REPLACE INTO index_outbox (job_id, state, function, module, created_at, updated_at)
    VALUES (NEW.id, NEW.state, NEW.function, NEW.module, NEW.created_at, NEW.updated_at);
END;
CREATE TRIGGER jobs_index_delete AFTER DELETE ON jobs BEGIN
  INSERT OR REPLACE INTO index_outbox (job_id, state, function, module, created_at, updated_at)
    VALUES (OLD.id, 'DELETED', OLD.function, OLD.module, OLD.created_at, OLD.updated_at);
END;`;

/** Replaces the first outbox by the append-only log, carrying over what was not yet sent. */
export const INDEX_OUTBOX_TO_LOG = `
DROP TRIGGER jobs_index_insert;
DROP TRIGGER jobs_index_update;
DROP TRIGGER jobs_index_delete;
ALTER TABLE index_outbox RENAME TO index_outbox_v1;
${INDEX_LOG}
INSERT INTO index_outbox (job_id, state, function, module, created_at, updated_at)
  SELECT job_id, state, function, module, created_at, updated_at FROM index_outbox_v1 ORDER BY seq;
DROP TABLE index_outbox_v1;`;

/**
 * The job index is fed from the jobs table itself: every state change stamps the row
 * with the next `change_seq` (a per-object counter, so strictly increasing), the feed
 * sends rows past the last sequence the index acknowledged, and a deleted job leaves a
 * tombstone with its own sequence. This replaced trigger-written change logs, which cost
 * as much as the jobs themselves (docs/benchmarks.md). Pending log rows become re-sends.
 */
export const INDEX_BY_CHANGE_SEQ = `
ALTER TABLE jobs ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET change_seq = seq;
CREATE INDEX jobs_by_change ON jobs (change_seq);
CREATE TABLE index_tombstones (change_seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL);
INSERT INTO index_tombstones (change_seq, job_id)
  SELECT (SELECT COALESCE(MAX(seq), 0) FROM jobs) + o.seq, o.job_id FROM index_outbox o WHERE o.state = 'DELETED';
CREATE TABLE index_state (id INTEGER PRIMARY KEY CHECK (id = 1), sent_seq INTEGER NOT NULL);
INSERT INTO index_state (id, sent_seq) VALUES (1, 0);
DROP TRIGGER jobs_index_insert;
DROP TRIGGER jobs_index_update;
DROP TRIGGER jobs_index_delete;
DROP TABLE index_outbox;`;

export type IndexRow = { job_id: string; state: string; function: string; module: string; created_at: number; updated_at: number };
