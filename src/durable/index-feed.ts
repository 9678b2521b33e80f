/**
 * Feeds a device object's job changes to the job index: the change log that
 * triggers write (job-row.ts) is sent in batches, the latest change per job,
 * coalesced over a few milliseconds, and deleted once the index has it.
 * Failures keep the rows.
 */
import type { Sql } from "./sql-object.js";
import type { IndexRow } from "./job-row.js";

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
    if (this.pending()) this.schedule();
  }

  private pending() {
    return this.sql.one("SELECT 1 AS x FROM index_outbox LIMIT 1") !== undefined;
  }

  private async flush() {
    const send = this.send();
    const rows = this.sql.all<IndexRow & { seq: number }>("SELECT * FROM index_outbox ORDER BY seq LIMIT 2000");
    if (rows.length === 0 || !send) return;
    const latest = new Map<string, IndexRow>();
    for (const { seq: _s, ...r } of rows) latest.set(r.job_id, r);
    try {
      await send([...latest.values()]);
    } catch {
      this.schedule(1_000); // the index is unreachable: keep the rows, try again
      return;
    }
    // Changes logged after the read got larger seqs (the rows read still existed then):
    // deleting up to the last seq read removes exactly what the index acknowledged.
    this.sql.run("DELETE FROM index_outbox WHERE seq <= ?", rows[rows.length - 1]!.seq);
    if (this.pending()) this.schedule(0);
  }
}
