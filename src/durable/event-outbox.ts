/**
 * An outbox of events on their way to the next object: rows written in the same
 * transaction as the change they describe (by SQLite triggers in the device object, or by
 * `add`), sent in batches coalesced over a few milliseconds, deleted once the receiver
 * took them. One send at a time; a failed send is retried with backoff (`wakeAt` tells the
 * host's alarm when), so events survive a restart and are delivered at least once.
 * Used by the device object (to its relay) and by the relays (to the namespace's hub).
 */
import type { Sql } from "./sql-object.js";
import type { Clock } from "../core/clock.js";
import { retryDelayMs } from "../core/timing.js";

export const EVENT_OUTBOX_TABLE = `
CREATE TABLE event_outbox (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  kind       TEXT NOT NULL,
  device     TEXT,
  job        TEXT,
  deployment TEXT,
  data       TEXT NOT NULL DEFAULT '{}',
  at         INTEGER
);`;

/** An event as it travels between objects (`data`: a JSON object's text; `at`: ms). */
export type OutboxEvent = { kind: string; device: string | null; job: string | null; deployment: string | null; data: string; at: number };

const BATCH = 500;

export interface OutboxOptions {
  clock: Clock;
  coalesceMs: number;
  retryBaseMs?: number;
  /** asks the host to run `resume()` by `at` even if evicted meanwhile (its alarm) */
  wakeBy?: (at: number) => void;
}

export class EventOutbox {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inFlight = false;
  private failures = 0;
  private retryAt: number | null = null;
  /** something was added while a batch was in flight (it goes next) */
  private addedInFlight = false;

  constructor(
    private readonly sql: Sql,
    /** sends one batch; undefined while there is nowhere to send (an unregistered device) */
    private readonly send: () => ((events: OutboxEvent[]) => Promise<unknown>) | undefined,
    private readonly opts: OutboxOptions,
  ) {}

  /** Adds one event (the generic publish: services, rollouts and other parts add kinds this way). */
  add(e: Omit<OutboxEvent, "at"> & { at?: number }) {
    this.sql.run`INSERT INTO event_outbox (kind, device, job, deployment, data, at) VALUES (${e.kind}, ${e.device}, ${e.job}, ${e.deployment}, ${e.data}, ${e.at ?? this.opts.clock.now()})`;
    this.schedule(false);
  }

  /** Adds many (a relay taking a batch); one statement per event, one transaction by the caller. */
  addAll(events: OutboxEvent[]) {
    for (const e of events) this.sql.run`INSERT INTO event_outbox (kind, device, job, deployment, data, at) VALUES (${e.kind}, ${e.device}, ${e.job}, ${e.deployment}, ${e.data}, ${e.at})`;
    // Each event carries its time: stamping would re-read every row still waiting (a relay's backlog).
    this.schedule(false);
  }

  /** When the host must be awake for a retry. */
  wakeAt(): number | null {
    return this.retryAt;
  }

  /**
   * Sends soon. Rows a trigger wrote carry no time (a trigger cannot read this object's
   * clock): they are stamped now, in the same request as the change.
   */
  schedule(stamp = true) {
    // `stamp: false`: the caller's rows all carry their time (the job and deployment triggers do).
    if (stamp) this.sql.run("UPDATE event_outbox SET at = ? WHERE at IS NULL", this.opts.clock.now());
    if (this.inFlight) this.addedInFlight = true;
    if (this.inFlight || this.timer !== null) return;
    this.arm(this.opts.coalesceMs);
  }

  /** After a restart or from the alarm: sends what is waiting. */
  resume() {
    if (this.sql.one("SELECT 1 AS x FROM event_outbox LIMIT 1")) this.schedule();
  }

  private arm(ms: number) {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.retryAt = null;
      void this.flush();
    }, ms);
  }

  private async flush() {
    const send = this.send();
    if (!send) return;
    const rows = this.sql.all<OutboxEvent & { seq: number }>("SELECT seq, kind, device, job, deployment, data, at FROM event_outbox ORDER BY seq LIMIT ?", BATCH);
    if (rows.length === 0) return;
    this.inFlight = true;
    this.addedInFlight = false;
    try {
      await send(rows.map(({ seq: _seq, ...e }) => ({ ...e, at: e.at ?? this.opts.clock.now() })));
    } catch {
      this.inFlight = false;
      this.failures++;
      if (this.timer !== null) clearTimeout(this.timer);
      const delay = retryDelayMs(this.failures, Math.random(), this.opts.retryBaseMs ?? 1_000, 30_000);
      this.arm(delay);
      this.retryAt = this.opts.clock.now() + delay;
      this.opts.wakeBy?.(this.retryAt);
      return;
    }
    this.inFlight = false;
    this.failures = 0;
    this.sql.run("DELETE FROM event_outbox WHERE seq <= ?", rows[rows.length - 1]!.seq);
    // More waits if the batch was full or anything was added during the flight (every add schedules).
    if ((rows.length === BATCH || this.addedInFlight) && this.timer === null) this.arm(0);
  }
}
