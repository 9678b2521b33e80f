/**
 * Feeds a device object's job changes to the job index: the outbox rows that
 * triggers write (job-row.ts) are sent in batches, coalesced over a few
 * milliseconds, and deleted once the index has them. Failures keep the rows.
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
    const rows = this.sql.all<IndexRow & { seq: number }>("SELECT * FROM index_outbox ORDER BY seq LIMIT 500");
    if (rows.length === 0 || !send) return;
    try {
      await send(rows.map(({ seq: _s, ...r }) => r));
    } catch {
      this.schedule(1_000); // the index is unreachable: keep the rows, try again
      return;
    }
    // A row changed again since it was read was replaced with a larger seq (AUTOINCREMENT):
    // deleting up to the largest seq read removes exactly what the index acknowledged.
    this.sql.run("DELETE FROM index_outbox WHERE seq <= ?", rows[rows.length - 1]!.seq);
    if (this.pending()) this.schedule(0);
  }
}
