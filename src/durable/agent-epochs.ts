/**
 * Fencing of agent sessions: each session an agent opens gets the next epoch of this device,
 * and only the newest one is heard. A second agent process holding the same credential takes
 * the device over by opening a session; what the older process sends from then on is refused
 * (the agent stops itself when it hears so). Epoch 0 is the session-less agent (no header), heard
 * only until the device's first session opens.
 */
import type { Sql } from "./sql-object.js";

export const AGENT_SESSIONS_TABLE = `CREATE TABLE agent_sessions (
  epoch INTEGER PRIMARY KEY,
  opened_at INTEGER NOT NULL,
  fenced_at INTEGER,
  refused INTEGER NOT NULL DEFAULT 0,
  last_refused_at INTEGER
);`;

type SessionRow = { epoch: number; opened_at: number; refused: number };
export type EpochCheck = { ok: true } | { ok: false; current: number };

export class AgentEpochs {
  private cached: SessionRow | null | undefined;

  constructor(private readonly sql: Sql) {}

  private currentRow(): SessionRow | null {
    if (this.cached === undefined) {
      this.cached = this.sql.one<SessionRow>("SELECT epoch, opened_at, refused FROM agent_sessions ORDER BY epoch DESC LIMIT 1") ?? null;
    }
    return this.cached;
  }

  /** The epoch now in charge (0: no session opened yet). */
  get current(): number {
    return this.currentRow()?.epoch ?? 0;
  }

  /** Opens a new session: the next epoch, fencing every older one. Answers it and the one it replaced. */
  open(now: number): { epoch: number; previous: number } {
    const previous = this.current;
    const epoch = previous + 1;
    this.sql.run("UPDATE agent_sessions SET fenced_at = ? WHERE epoch = ?", now, previous);
    this.sql.run("INSERT INTO agent_sessions (epoch, opened_at) VALUES (?, ?)", epoch, now);
    // Only the last few sessions are worth keeping.
    this.sql.run("DELETE FROM agent_sessions WHERE epoch < ?", epoch - 20);
    this.cached = { epoch, opened_at: now, refused: 0 };
    return { epoch, previous };
  }

  /**
   * Whether a request of session `epoch` is heard. An older epoch is refused (and counted against the
   * current session); a newer one than any opened is made up, and refused the same way.
   */
  check(epoch: number, now: number): EpochCheck {
    const current = this.currentRow();
    if (epoch === (current?.epoch ?? 0)) return { ok: true };
    if (current) {
      this.sql.run("UPDATE agent_sessions SET refused = refused + 1, last_refused_at = ? WHERE epoch = ?", now, current.epoch);
      current.refused++;
    }
    return { ok: false, current: current?.epoch ?? 0 };
  }

  /** For the device view: the session in charge, or null before the first one. */
  view(): { epoch: number; openedAt: number; refused: number } | null {
    const row = this.currentRow();
    return row ? { epoch: row.epoch, openedAt: row.opened_at, refused: row.refused } : null;
  }
}
