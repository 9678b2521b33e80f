/**
 * Bounded commands on the agent's side: a command (a job push, a cancel, a deployments change, a
 * generic command) is applied only before its expiry, judged on the control plane's clock (the agent
 * keeps the offset to it from the last server time it heard); one that arrives later is discarded,
 * never applied late, and answered `expired`. Every command is answered: acked, nacked with a reason,
 * or expired. Answers go in small batches; a lost batch is not retried (the object marks what it did
 * not hear of by the expiry as unanswered).
 */
import type { CommandAck, CommandRef } from "../protocol/agent.js";
import type { AgentLog } from "./agent-log.js";

/** Answers wait this long for others to join their batch. */
const BATCH_MS = 50;
const MAX_BATCH = 64;

export class CommandGate {
  /** the control plane's clock minus this one's, as last heard */
  private offsetMs = 0;
  private pending: CommandAck[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly send: (acks: CommandAck[]) => Promise<unknown>,
    private readonly log: AgentLog,
    /** this device's clock (injected in tests) */
    private readonly now: () => number = Date.now,
  ) {}

  /** The control plane said what time it is (a session opened, a poll answered). */
  serverTime(serverMs: number) {
    this.offsetMs = serverMs - this.now();
  }

  /** The control plane's time now, as this agent can tell. */
  serverNow(): number {
    return this.now() + this.offsetMs;
  }

  /**
   * Whether a command may be applied now. One past its expiry is answered `expired` here and must be
   * discarded by the caller; a message without a command (an older control plane) is always applied.
   */
  admit(cmd: CommandRef | undefined, what: string): boolean {
    if (!cmd) return true;
    const late = this.serverNow() - cmd.expiresAt;
    if (late <= 0) return true;
    this.log("warn", "discarded a command that arrived after its expiry", { command: cmd.id, what, lateMs: Math.round(late) });
    this.answer(cmd, "expired", `arrived ${Math.round(late)} ms after its expiry; discarded`);
    return false;
  }

  /** Answers a command (nothing to answer for a message without one). */
  answer(cmd: CommandRef | undefined, outcome: CommandAck["outcome"], reason?: string) {
    if (!cmd) return;
    this.pending.push({ id: cmd.id, outcome, ...(reason ? { reason: reason.slice(0, 500) } : {}) });
    if (this.pending.length >= MAX_BATCH) return void this.flush();
    this.timer ??= setTimeout(() => void this.flush(), BATCH_MS);
  }

  async flush() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending.splice(0, MAX_BATCH);
    if (batch.length === 0) return;
    try {
      await this.send(batch);
    } catch (e) {
      this.log("debug", "could not send command answers; the control plane marks them unanswered", { count: batch.length, error: String(e) });
    }
    if (this.pending.length > 0) void this.flush();
  }

  stop() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
