/**
 * One namespace's audit log (object `audit/<namespace>`; `audit/*` for keys that span all
 * namespaces): append-only rows of who did what to which target, with what outcome, under
 * which trace. The Worker appends in batches after each response is decided (worker/audit.ts);
 * device objects append the commands they send agents. Nothing updates or deletes a row but
 * retention: the alarm deletes rows older than AUDIT_RETENTION_DAYS (default 90) in runs of
 * RETENTION_RUN, on the object's clock. docs/observability.md.
 */
import { SqlObject } from "./sql-object.js";
import type { AuditEntry, AuditRecord } from "../protocol/audit.js";
import { DEFAULT_AUDIT_RETENTION_DAYS } from "../protocol/audit.js";
import { iso } from "../core/time.js";
import type { Env } from "../platform/env.js";

const SCHEMA = `
CREATE TABLE audit (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  at         INTEGER NOT NULL,
  namespace  TEXT NOT NULL,
  kind       TEXT NOT NULL,
  actor      TEXT NOT NULL,
  role       TEXT NOT NULL,
  operation  TEXT NOT NULL,
  target     TEXT NOT NULL,
  method     TEXT,
  path       TEXT,
  outcome    INTEGER NOT NULL,
  trace_id   TEXT,
  request_id TEXT
);
CREATE INDEX audit_by_time ON audit (at);
CREATE INDEX audit_by_actor ON audit (actor, seq);
CREATE INDEX audit_by_target ON audit (target, seq);`;

const RETENTION_RUN = 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

type Row = { seq: number; at: number; namespace: string; kind: "request" | "command"; actor: string; role: string; operation: string; target: string; method: string | null; path: string | null; outcome: number; trace_id: string | null; request_id: string | null };

export interface AuditFilter {
  since: number | null;
  until: number | null;
  actor: string | null;
  operation: string | null;
  target: string | null;
  outcome: number | null;
  /** seq of the last entry of the previous page: this page is older */
  before: number | null;
  limit: number;
}

export function auditRetentionMs(env: Env): number {
  const days = Number(env.AUDIT_RETENTION_DAYS);
  return (Number.isFinite(days) && days > 0 ? days : DEFAULT_AUDIT_RETENTION_DAYS) * DAY_MS;
}

export class AuditObject extends SqlObject<Env> {
  protected migrations() {
    return [SCHEMA];
  }

  /** A namespace nobody acted in keeps no state. */
  protected override schemaOnFirstWrite() {
    return true;
  }

  async append(records: AuditRecord[]): Promise<void> {
    if (records.length === 0) return;
    this.ensureSchema();
    this.ctx.storage.transactionSync(() => {
      for (const r of records) {
        this.run`INSERT INTO audit (at, namespace, kind, actor, role, operation, target, method, path, outcome, trace_id, request_id)
           VALUES (${r.at}, ${r.namespace}, ${r.kind}, ${r.actor}, ${r.role}, ${r.operation}, ${r.target}, ${r.method}, ${r.path}, ${r.outcome}, ${r.traceId}, ${r.requestId})`;
      }
    });
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(this.nextRetentionRun());
  }

  /** Newest first, `limit` at a time; the next page is entries older than the last seq. */
  async list(f: AuditFilter): Promise<{ entries: AuditEntry[]; more: boolean }> {
    if (!this.hasSchema) return { entries: [], more: false };
    const rows = this.all<Row>`SELECT * FROM audit
       WHERE (${f.before} IS NULL OR seq < ${f.before}) AND (${f.since} IS NULL OR at >= ${f.since}) AND (${f.until} IS NULL OR at < ${f.until})
         AND (${f.actor} IS NULL OR actor = ${f.actor}) AND (${f.operation} IS NULL OR operation = ${f.operation})
         AND (${f.target} IS NULL OR target = ${f.target}) AND (${f.outcome} IS NULL OR outcome = ${f.outcome})
       ORDER BY seq DESC LIMIT ${f.limit + 1}`;
    return {
      entries: rows.slice(0, f.limit).map((r) => ({
        seq: r.seq, time: iso(r.at)!, namespace: r.namespace, kind: r.kind, actor: r.actor, role: r.role, operation: r.operation,
        target: r.target, method: r.method, path: r.path, outcome: r.outcome, traceId: r.trace_id, requestId: r.request_id,
      })),
      more: rows.length > f.limit,
    };
  }

  /** When the oldest row passes retention (or a day from now, to look again). */
  private nextRetentionRun(): number {
    const now = this.clock.now();
    const oldest = this.one<{ at: number | null }>("SELECT MIN(at) AS at FROM audit")?.at ?? null;
    return oldest === null ? now + DAY_MS : Math.max(now, Math.min(oldest + auditRetentionMs(this.env), now + DAY_MS));
  }

  /** Retention: one bounded run of the oldest rows past it, then the next time. */
  override async alarm() {
    if (!this.hasSchema) return;
    const cutoff = this.clock.now() - auditRetentionMs(this.env);
    const deleted = this.run("DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE at < ? ORDER BY at LIMIT ?)", cutoff, RETENTION_RUN);
    await this.ctx.storage.setAlarm(deleted === RETENTION_RUN ? this.clock.now() : this.nextRetentionRun());
  }
}

/** Registers this class as the one behind the AUDIT binding (see src/platform/env.ts). */
declare module "../platform/env.js" {
  interface DurableObjectClasses {
    AUDIT: AuditObject;
  }
}
