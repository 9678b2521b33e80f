/**
 * The device's share of GET /metrics for what lives only in device objects: its services by
 * status and its deployment parts by state. The device keeps nothing extra: on a change it
 * counts its own rows (a handful), and when the counts differ from what its listing shard
 * last acknowledged it sends them, with a revision taken before the call, to that shard
 * (device-list-object.ts `publishTally`), which swaps the device's old counts for the new
 * ones in its totals. So a scrape reads totals (one row per status per shard), never a
 * device object; a re-sent or late tally changes no total twice; a failed send is retried
 * from the alarm.
 */
import type { Sql } from "./sql-object.js";
import type { Clock } from "../core/clock.js";
import { retryDelayMs } from "../core/timing.js";

export const TALLY_TABLE = `CREATE TABLE tally_sync (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL, sent TEXT);
INSERT INTO tally_sync (id, revision, sent) VALUES (1, 0, NULL);`;

/** kind ("service" | "deployment"), its status or state, how many of this device's. */
export type TallyRow = { kind: string; state: string; n: number };

export class DeviceTallies {
  private inFlight: Promise<void> | null = null;
  private again = false;
  private failures = 0;
  private retryAt: number | null = null;

  constructor(
    private readonly sql: Sql,
    private readonly clock: Clock,
    /** sends the tally to this device's listing shard; undefined while the device is not registered */
    private readonly send: () => ((rows: TallyRow[], revision: number) => Promise<unknown>) | undefined,
    private readonly opts: { retryBaseMs: number; wakeBy: (at: number) => void; waitUntil: (p: Promise<unknown>) => void },
  ) {}

  /** This device's counts now. */
  private count(): TallyRow[] {
    return [
      ...this.sql.all<TallyRow>("SELECT 'service' AS kind, status AS state, COUNT(*) AS n FROM services GROUP BY status ORDER BY status"),
      ...this.sql.all<TallyRow>("SELECT 'deployment' AS kind, state, COUNT(*) AS n FROM deployments GROUP BY state ORDER BY state"),
    ];
  }

  /** A service's status or a deployment part's state may have changed: send the counts if they did. */
  changed() {
    if (this.inFlight) {
      this.again = true;
      return;
    }
    const rows = this.count();
    const fingerprint = JSON.stringify(rows);
    const sync = this.sql.one<{ revision: number; sent: string | null }>("SELECT revision, sent FROM tally_sync")!;
    if (sync.sent === fingerprint || (sync.sent === null && rows.length === 0)) return;
    const send = this.send();
    if (!send) return;
    const revision = sync.revision + 1;
    this.sql.run("UPDATE tally_sync SET revision = ?", revision);
    const done = send(rows, revision)
      .then(() => {
        this.failures = 0;
        this.retryAt = null;
        this.sql.run("UPDATE tally_sync SET sent = ? WHERE revision = ?", fingerprint, revision);
      })
      .catch((e) => {
        this.failures++;
        this.retryAt = this.clock.now() + retryDelayMs(this.failures, Math.random(), this.opts.retryBaseMs, 30_000);
        this.opts.wakeBy(this.retryAt);
        console.warn(JSON.stringify({ level: "warn", msg: "metrics tally publish failed; will retry", error: String(e) }));
      })
      .finally(() => {
        this.inFlight = null;
        if (this.again) {
          this.again = false;
          this.changed();
        }
      });
    this.inFlight = done;
    this.opts.waitUntil(done);
  }

  /** The alarm's due time for a retry. */
  dueAt(): number | null {
    return this.retryAt;
  }

  /** From the alarm: retries a failed send. */
  resume(now: number) {
    if (this.retryAt !== null && this.retryAt <= now) {
      this.retryAt = null;
      this.changed();
    }
  }
}
