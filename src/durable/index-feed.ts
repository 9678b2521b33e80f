/**
 * Feeds a device object's job changes to the job index. Every state change stamps the
 * job with the next `change_seq` (job-row.ts, INDEX_FEED_TABLES); the feed sends the
 * rows and tombstones past the sequence the index last acknowledged, in batches
 * coalesced over a few milliseconds, then records the new sequence. Changes made while
 * a batch is in flight get larger sequences, so they go in the next one. Failures keep
 * the sequence where it was: the next attempt sends the same changes again (the index
 * ignores what it already has).
 */
import type { Sql } from "./sql-object.js";
import type { IndexRow } from "./job-row.js";

const BATCH = 2000;

export class IndexFeed {
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly sql: Sql,
    /** sends one batch to the index; undefined while the device is not registered */
    private readonly send: () => ((rows: IndexRow[]) => Promise<unknown>) | undefined,
  ) {}

  /** Sends soon; changes in the next `delayMs` travel in the same batch. */
  schedule(delayMs = 20) {
    this.timer ??= setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, delayMs);
  }

  /** Schedules a send if anything is waiting (after a restart, from the alarm). */
  resume() {
    if (this.pending(this.sentSeq())) this.schedule();
  }

  private sentSeq(): number {
    return this.sql.one<{ sent_seq: number }>("SELECT sent_seq FROM index_state WHERE id = 1")?.sent_seq ?? 0;
  }

  private pending(after: number): boolean {
    return (
      this.sql.one("SELECT 1 AS x FROM jobs WHERE change_seq > ? LIMIT 1", after) !== undefined ||
      this.sql.one("SELECT 1 AS x FROM index_tombstones WHERE change_seq > ? LIMIT 1", after) !== undefined
    );
  }

  private async flush() {
    const send = this.send();
    if (!send) return;
    const after = this.sentSeq();
    const rows = this.sql.all<IndexRow & { change_seq: number }>(
      "SELECT id AS job_id, state, function, module, created_at, updated_at, change_seq FROM jobs WHERE change_seq > ? ORDER BY change_seq LIMIT ?",
      after, BATCH,
    );
    const tombstones = this.sql.all<{ change_seq: number; job_id: string }>(
      "SELECT change_seq, job_id FROM index_tombstones WHERE change_seq > ? ORDER BY change_seq LIMIT ?",
      after, BATCH,
    );
    if (rows.length === 0 && tombstones.length === 0) return;
    // Only as far as both lists are complete: a list cut by the limit bounds what this batch covers.
    const upTo = Math.min(
      rows.length === BATCH ? rows[rows.length - 1]!.change_seq : Number.POSITIVE_INFINITY,
      tombstones.length === BATCH ? tombstones[tombstones.length - 1]!.change_seq : Number.POSITIVE_INFINITY,
      Math.max(rows[rows.length - 1]?.change_seq ?? 0, tombstones[tombstones.length - 1]?.change_seq ?? 0),
    );
    const batch: IndexRow[] = [
      ...rows.filter((r) => r.change_seq <= upTo).map(({ change_seq: _c, ...r }) => r),
      ...tombstones.filter((t) => t.change_seq <= upTo).map((t) => ({ job_id: t.job_id, state: "DELETED", function: "", module: "", created_at: 0, updated_at: 0 })),
    ];
    try {
      await send(batch);
    } catch {
      this.schedule(1_000); // the index is unreachable: try again from the same sequence
      return;
    }
    this.sql.run("UPDATE index_state SET sent_seq = ? WHERE id = 1 AND sent_seq < ?", upTo, upTo);
    this.sql.run("DELETE FROM index_tombstones WHERE change_seq <= ?", upTo);
    if (this.pending(upTo)) this.schedule(0);
  }
}
