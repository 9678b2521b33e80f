/**
 * Retention in a device object (docs/retention.md): ended jobs past their namespace's
 * retention, and idempotency keys past their window, go in bounded runs from the alarm.
 * The object supplies how to read its namespace's settings and how to delete ended jobs
 * (with their files, logs and index rows); the timing decisions are in core/retention.ts.
 */
import type { Sql } from "./sql-object.js";
import type { JobRow } from "./job-row.js";
import { RETENTION_BATCH, retentionCutoffs, retentionDue } from "../core/retention.js";
import { DEFAULT_RETENTION, type Retention } from "../protocol/signing.js";
import { TERMINAL_STATES } from "../protocol/job.js";

/**
 * How long a device object trusts what it read of its namespace's retention: an hour keeps
 * the registry's load from retention at (devices / 3,600) reads per second (docs/scale.md).
 */
const SETTINGS_TRUSTED_MS = 60 * 60 * 1000;
/** No retention is shorter (protocol/signing.ts): younger leftovers need no settings read. */
const SHORTEST_RETENTION_MS = 60 * 1000;
const TERMINAL_SQL = `(${[...TERMINAL_STATES].map((s) => `'${s}'`).join(", ")})`;

export type EndedJob = Pick<JobRow, "id" | "call">;

export class JobRetention {
  private known: { value: Retention; until: number } | null = null;

  constructor(
    private readonly sql: Sql,
    /** the namespace's retention now (throws if it cannot be read) */
    private readonly readSettings: () => Promise<Retention>,
    /** deletes ended jobs with everything they left */
    private readonly deleteEnded: (jobs: EndedJob[]) => Promise<void>,
  ) {}

  /** How long ended jobs are kept, by the last read (or the default): for setting the alarm when a job ends. */
  keepEndedMs(): number {
    return (this.known?.value ?? DEFAULT_RETENTION).endedJobsSeconds * 1000;
  }

  /** One bounded run: the oldest ended jobs past retention, then idempotency keys past their window. */
  async run(now: number): Promise<void> {
    const oldest = this.oldest();
    if (Math.min(oldest.endedAt ?? Infinity, oldest.keyAt ?? Infinity) > now - SHORTEST_RETENTION_MS) return;
    const retention = await this.settings(now);
    if (!retention) return;
    const { endedBefore, keysBefore } = retentionCutoffs(now, retention);
    const expired = this.sql.all<EndedJob>(
      `SELECT id, call FROM jobs WHERE finished_at IS NOT NULL AND finished_at <= ? AND state IN ${TERMINAL_SQL} ORDER BY finished_at LIMIT ?`,
      endedBefore, RETENTION_BATCH,
    );
    if (expired.length > 0) await this.deleteEnded(expired);
    this.sql.run(
      "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency WHERE created_at <= ? ORDER BY created_at LIMIT ?)",
      keysBefore, RETENTION_BATCH,
    );
  }

  /** When the next run has work (one of the alarm's times). */
  dueAt(now: number): number | null {
    const oldest = this.oldest();
    return retentionDue(now, this.known?.value ?? DEFAULT_RETENTION, oldest.endedAt, oldest.keyAt);
  }

  private async settings(now: number): Promise<Retention | null> {
    if (this.known && this.known.until > now) return this.known.value;
    try {
      const value = await this.readSettings();
      this.known = { value, until: now + SETTINGS_TRUSTED_MS };
      return value;
    } catch {
      return null; // never delete by a guess: the next run asks again
    }
  }

  private oldest(): { endedAt: number | null; keyAt: number | null } {
    const min = (q: string) => this.sql.one<{ t: number | null }>(q)?.t ?? null;
    return {
      // only ended jobs have finished_at (one index lookup: this runs on every alarm)
      endedAt: min("SELECT MIN(finished_at) AS t FROM jobs WHERE finished_at IS NOT NULL"),
      keyAt: min("SELECT MIN(created_at) AS t FROM idempotency"),
    };
  }
}
