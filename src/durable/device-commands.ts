/**
 * Bounded commands: each message the device object sends its agent to act on (a job push, a cancel, a
 * deployments change, a generic command of services or rollouts) gets an id and an expiry here, and its
 * outcome is recorded: acked, nacked (with the agent's reason), expired (it reached the agent too late
 * and was discarded there), or unanswered (no answer by its expiry; set from the alarm).
 */
import type { Sql } from "./sql-object.js";
import type { Clock } from "../core/clock.js";
import type { CommandAck, CommandRef, CommandView, ServerMessage } from "../protocol/agent.js";
import { iso } from "../core/time.js";

export const COMMANDS_TABLE = `CREATE TABLE commands (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  subject TEXT NOT NULL,
  sent_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'sent',
  reason TEXT,
  answered_at INTEGER
);
CREATE INDEX commands_waiting ON commands (expires_at) WHERE state = 'sent';
CREATE INDEX commands_by_time ON commands (sent_at);`;

/** How long a command is good for, unless the setting says otherwise. */
export const DEFAULT_COMMAND_TTL_MS = 30_000;
/** Outcomes kept per device (the oldest go first). */
const KEEP = 500;

type CommandRow = { id: string; kind: string; subject: string; sent_at: number; expires_at: number; state: CommandView["state"]; reason: string | null; answered_at: number | null };

/** The messages that are commands, and what each is about. */
function describe(msg: ServerMessage): { kind: string; subject: string } | null {
  switch (msg.t) {
    case "jobs":
      return { kind: "jobs", subject: msg.jobs.map((j) => j.jobId).join(",").slice(0, 2000) };
    case "cancel":
      return { kind: "cancel", subject: msg.jobIds.join(",").slice(0, 2000) };
    case "deployments":
      return { kind: "deployments", subject: `version ${msg.version}` };
    case "command":
      return { kind: msg.kind, subject: JSON.stringify(msg.body ?? null).slice(0, 2000) };
    default:
      return null;
  }
}

export class DeviceCommands {
  private counter = 0;

  constructor(
    private readonly sql: Sql,
    private readonly clock: Clock,
    private readonly ttlMs: () => number,
    private readonly wakeBy: (at: number) => void,
  ) {}

  /** Records a new command and answers its id and expiry. */
  issue(kind: string, subject: string): CommandRef {
    const now = this.clock.now();
    const id = `c${now.toString(36)}${(this.counter++).toString(36)}${crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36)}`;
    const expiresAt = now + this.ttlMs();
    this.sql.run("INSERT INTO commands (id, kind, subject, sent_at, expires_at) VALUES (?, ?, ?, ?, ?)", id, kind, subject, now, expiresAt);
    if (this.counter % 50 === 0) this.sql.run("DELETE FROM commands WHERE id IN (SELECT id FROM commands ORDER BY sent_at DESC LIMIT -1 OFFSET ?)", KEEP);
    this.wakeBy(expiresAt);
    return { id, expiresAt };
  }

  /** A message the link sends: a command gets its id and expiry (once); anything else goes as it is. */
  stamp(msg: ServerMessage): ServerMessage {
    if ("cmd" in msg && msg.cmd) return msg;
    const what = describe(msg);
    return what ? ({ ...msg, cmd: this.issue(what.kind, what.subject) } as ServerMessage) : msg;
  }

  /** The agent's answers; an answer to a command already decided (or unknown) changes nothing. Answers how many were recorded. */
  answer(acks: CommandAck[]): number {
    const now = this.clock.now();
    let n = 0;
    for (const a of acks) n += this.sql.run("UPDATE commands SET state = ?, reason = ?, answered_at = ? WHERE id = ? AND state IN ('sent', 'unanswered')", a.outcome, a.reason ?? null, now, a.id);
    return n;
  }

  /** From the alarm: commands with no answer by their expiry are unanswered. */
  expireUnanswered(now: number) {
    this.sql.run("UPDATE commands SET state = 'unanswered' WHERE state = 'sent' AND expires_at <= ?", now);
  }

  /** The alarm's time: the earliest expiry of a command still waiting for its answer. */
  dueAt(): number | null {
    return this.sql.one<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM commands WHERE state = 'sent'")?.t ?? null;
  }

  list(limit: number): CommandView[] {
    return this.sql.all<CommandRow>("SELECT * FROM commands ORDER BY sent_at DESC, rowid DESC LIMIT ?", limit).map((r) => ({
      id: r.id,
      kind: r.kind,
      subject: r.subject,
      sentAt: iso(r.sent_at)!,
      expiresAt: iso(r.expires_at)!,
      state: r.state,
      reason: r.reason,
      answeredAt: iso(r.answered_at),
    }));
  }
}
