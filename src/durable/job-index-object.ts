/**
 * The job listing: one row per job across all devices, in creation order, fed by
 * the device objects' index outboxes. Reads never fan out to device objects;
 * the row can lag the job's own object by a flush (tens of milliseconds), and
 * GET /v1/jobs/:id stays the authority.
 */
import { SqlObject } from "./sql-object.js";
import type { IndexRow } from "./job-row.js";
import type { Env } from "../worker/env.js";
import type { JobState } from "../protocol/job.js";

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

export interface JobListItem {
  id: string;
  device: string;
  state: JobState;
  function: string;
  module: string;
  createdAt: string;
  updatedAt: string;
}

export interface ListQuery {
  /** null: all namespaces */
  namespace: string | null;
  device: string | null;
  status: JobState | null;
  limit: number;
  /** the (created_at, id) of the last row of the previous page */
  after: { createdAt: number; id: string } | null;
}

export function jobIndexStub(env: Env) {
  return env.JOB_INDEX.get(env.JOB_INDEX.idFromName("global"));
}

type Row = { id: string; device: string; state: JobState; function: string; module: string; created_at: number; updated_at: number };

export class JobIndexObject extends SqlObject<Env> {
  protected migrations() {
    return [SCHEMA];
  }

  /** Applies a device's outbox batch; a row only moves forward in time (batches may be retried). */
  async apply(device: string, namespace: string, rows: IndexRow[]): Promise<number> {
    this.ctx.storage.transactionSync(() => {
      for (const r of rows) {
        if (r.state === "DELETED") {
          this.run("DELETE FROM jobs WHERE id = ?", r.job_id);
          continue;
        }
        this.run(
          `INSERT INTO jobs (id, namespace, device, state, function, module, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at WHERE excluded.updated_at >= jobs.updated_at`,
          r.job_id, namespace, device, r.state, r.function, r.module, r.created_at, r.updated_at,
        );
      }
    });
    return rows.length;
  }

  async list(q: ListQuery): Promise<{ jobs: JobListItem[]; next: { createdAt: number; id: string } | null }> {
    const rows = this.all<Row>(
      `SELECT * FROM jobs
       WHERE (? IS NULL OR namespace = ?) AND (? IS NULL OR device = ?) AND (? IS NULL OR state = ?)
         AND (? IS NULL OR (created_at, id) > (?, ?))
       ORDER BY created_at, id LIMIT ?`,
      q.namespace, q.namespace, q.device, q.device, q.status, q.status, q.after?.createdAt ?? null, q.after?.createdAt ?? null, q.after?.id ?? null, q.limit + 1,
    );
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    return {
      jobs: page.map((r) => ({
        id: r.id, device: r.device, state: r.state, function: r.function, module: r.module,
        createdAt: new Date(r.created_at).toISOString(), updatedAt: new Date(r.updated_at).toISOString(),
      })),
      next: rows.length > q.limit && last ? { createdAt: last.created_at, id: last.id } : null,
    };
  }
}
