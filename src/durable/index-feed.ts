/**
 * Feeds a device object's job changes to the job index. Every state change stamps the
 * job with the next `change_seq` (job-row.ts, INDEX_FEED_TABLES) taken from this feed's
 * counter; the feed sends the rows and tombstones past the sequence the index last
 * acknowledged, in batches coalesced over a few milliseconds, then records the new
 * sequence.
 *
 * - The counter never restarts below what was sent: on load it starts from the largest of
 *   the stored sequences and `sent_seq` (a job deleted after its tombstone was sent leaves
 *   no row behind, so the rows alone can say less than what the index has seen).
 * - One send at a time: changes made while a batch is in flight get larger sequences and go
 *   in the next one, sent when the flight lands (never a second flight of the same rows).
 * - A failed send is retried with exponential backoff (retryDelayMs), and changes made
 *   meanwhile wait for that retry instead of cutting it short; the host is asked to wake
 *   the object by then (its alarm), so a retry survives the object being evicted.
 * - Every row carries its change sequence; the index keeps per job the highest applied, so
 *   re-sends and late batches are harmless.
 */
import type { Sql } from "./sql-object.js";
import type { IndexRow } from "./job-row.js";
import type { Clock } from "../core/clock.js";
import { retryDelayMs } from "../core/timing.js";

const BATCH = 2000;

/** Timers the feed runs on; tests pass their own to step through flights and retries. */
export interface FeedTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: FeedTimers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface FeedOptions {
  clock: Clock;
  /** how long changes are coalesced into one batch */
  coalesceMs?: number;
  retryBaseMs?: number;
  retryCapMs?: number;
  /** asks the host to run `resume()` by `at` even if it is evicted meanwhile (the alarm) */
  wakeBy?: (at: number) => void;
  timers?: FeedTimers;
  random?: () => number;
  /**
   * The name of the index object the batches go to. When it changes (INDEX_SHARDS was
   * changed), the feed starts over from sequence 0, so the new shard gets every job.
   */
  target?: () => string | undefined;
  /** told of every change as it is scheduled (the device's event outbox sends the changes' events) */
  changed?: () => void;
}

export class IndexFeed {
  private timer: unknown = null;
  private inFlight = false;
  /** consecutive failed sends; > 0 means a backoff retry is what comes next */
  private failures = 0;
  private lastChange = 0;
  /** when the backoff retry is due (null: no retry pending) */
  private retryAt: number | null = null;
  private readonly timers: FeedTimers;
  /** index_state as last read or written (null: not read yet); this feed is its only writer */
  private sent: number | null = null;
  private fedTo: string | null | undefined = undefined;
  /** whether index_tombstones may hold unsent rows (true until a read finds none past what was sent; set by each tombstone) */
  private tombstones = true;

  constructor(
    private readonly sql: Sql,
    /** sends one batch to the index; undefined while the device is not registered */
    private readonly send: () => ((rows: IndexRow[]) => Promise<unknown>) | undefined,
    private readonly opts: FeedOptions,
  ) {
    this.timers = opts.timers ?? realTimers;
  }

  /** Reads the counter back from storage; call once when the object loads. */
  load() {
    this.lastChange = this.sql.one<{ n: number }>(
      `SELECT MAX((SELECT COALESCE(MAX(change_seq), 0) FROM jobs), (SELECT COALESCE(MAX(change_seq), 0) FROM index_tombstones),
                  COALESCE((SELECT sent_seq FROM index_state WHERE id = 1), 0)) AS n`,
    )!.n;
  }

  /** The sequence number of the next change (write it in the same statement as the change). */
  nextChange(): number {
    return ++this.lastChange;
  }

  /** The sequence number of a tombstone (a deleted job's row in index_tombstones). */
  nextTombstone(): number {
    this.tombstones = true;
    return this.nextChange();
  }

  /** When the object must be awake for a retry (one of its alarm's times). */
  wakeAt(): number | null {
    return this.retryAt;
  }

  /** Sends soon; changes in the next `coalesceMs` travel in the same batch. */
  schedule() {
    this.opts.changed?.();
    // In flight: the landing looks for more. Backing off: the retry carries it.
    if (this.inFlight || this.timer !== null) return;
    this.arm(this.opts.coalesceMs ?? 20);
  }

  /** Schedules a send if anything is waiting (after a restart, from the alarm). */
  resume() {
    if (this.retarget() || this.pending(this.sentSeq())) this.schedule();
  }

  /** Starts over for a new index object; answers whether it did. */
  private retarget(): boolean {
    const target = this.opts.target?.();
    if (target === undefined) return false;
    this.fedTo ??= this.sql.one<{ target: string | null }>("SELECT target FROM index_state WHERE id = 1")?.target ?? null;
    if (this.fedTo === target) return false;
    // Also when none was recorded yet: such a feed fed the index before it was sharded.
    this.sql.run("UPDATE index_state SET target = ?, sent_seq = 0 WHERE id = 1", target);
    this.fedTo = target;
    this.sent = 0;
    return true;
  }

  private arm(ms: number) {
    this.timer = this.timers.set(() => {
      this.timer = null;
      this.retryAt = null;
      void this.flush();
    }, ms);
  }

  private sentSeq(): number {
    this.sent ??= this.sql.one<{ sent_seq: number }>("SELECT sent_seq FROM index_state WHERE id = 1")?.sent_seq ?? 0;
    return this.sent;
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
    this.retarget();
    const after = this.sentSeq();
    const looked = this.tombstones;
    const { batch, upTo, tombstonesRead } = this.read(after, looked);
    // None past `after` now: the next batches need not look until a job is deleted (nextTombstone).
    if (looked && tombstonesRead === 0) this.tombstones = false;
    if (batch.length === 0) return;
    this.inFlight = true;
    try {
      await send(batch);
    } catch {
      this.inFlight = false;
      this.failures++;
      this.backOff();
      return;
    }
    this.inFlight = false;
    this.failures = 0;
    this.sql.run("UPDATE index_state SET sent_seq = ? WHERE id = 1 AND sent_seq < ?", upTo, upTo);
    this.sent = Math.max(this.sent ?? 0, upTo);
    if (batch.some((r) => r.state === "DELETED")) this.sql.run("DELETE FROM index_tombstones WHERE change_seq <= ?", upTo);
    // Every change (row or tombstone) takes its sequence from this counter: anything past upTo is waiting.
    if (this.lastChange > upTo) this.arm(0);
  }

  /** The index is unreachable: one retry, later each time, from the same sequence. */
  private backOff() {
    if (this.timer !== null) this.timers.clear(this.timer);
    const delay = retryDelayMs(this.failures, (this.opts.random ?? Math.random)(), this.opts.retryBaseMs, this.opts.retryCapMs);
    this.arm(delay);
    this.retryAt = this.opts.clock.now() + delay;
    this.opts.wakeBy?.(this.retryAt);
  }

  /** The changes past `after`, as far as both lists are complete (a list cut by the limit bounds the batch). */
  private read(after: number, withTombstones: boolean): { batch: IndexRow[]; upTo: number; tombstonesRead: number } {
    const rows = this.sql.all<IndexRow>(
      "SELECT id AS job_id, state, function, module, created_at, updated_at, change_seq, started_at, finished_at FROM jobs WHERE change_seq > ? ORDER BY change_seq LIMIT ?",
      after, BATCH,
    );
    const tombstones = withTombstones
      ? this.sql.all<{ change_seq: number; job_id: string }>("SELECT change_seq, job_id FROM index_tombstones WHERE change_seq > ? ORDER BY change_seq LIMIT ?", after, BATCH)
      : [];
    const upTo = Math.min(
      rows.length === BATCH ? rows[rows.length - 1]!.change_seq : Number.POSITIVE_INFINITY,
      tombstones.length === BATCH ? tombstones[tombstones.length - 1]!.change_seq : Number.POSITIVE_INFINITY,
      Math.max(rows[rows.length - 1]?.change_seq ?? 0, tombstones[tombstones.length - 1]?.change_seq ?? 0),
    );
    const batch: IndexRow[] = [
      ...rows.filter((r) => r.change_seq <= upTo),
      ...tombstones
        .filter((t) => t.change_seq <= upTo)
        .map((t) => ({ job_id: t.job_id, state: "DELETED", function: "", module: "", created_at: 0, updated_at: 0, change_seq: t.change_seq })),
    ];
    return { batch, upTo, tombstonesRead: tombstones.length };
  }
}
