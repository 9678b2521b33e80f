/**
 * Bounded commands on the agent's side: a command (a job push, a cancel, a deployments change, a
 * generic command) is applied only before its expiry, judged on the control plane's clock (the agent
 * keeps the offset to it from the last server time it heard); one that arrives later is discarded,
 * never applied late, and answered `expired`. Every command is answered: acked, nacked with a reason,
 * or expired. Answers go in small batches, and a batch is kept until the control plane confirms it
 * (the object answers how many it recorded): one lost on a dropped link or refused by a loaded server
 * is sent again, with backoff, and at once when a link opens. The object records an answer once (a
 * second answer of the same command changes nothing), so a resend after a lost confirmation is harmless.
 */
import type { CommandAck, CommandRef } from "../protocol/agent.js";
import type { AgentLog } from "./agent-log.js";

/** Answers wait this long for others to join their batch. */
const BATCH_MS = 50;
const MAX_BATCH = 64;
/** Answers kept for resending at most; past it the oldest go (the object marks them unanswered). */
const MAX_KEPT = 1_000;
/** A failed send is tried again after this, doubling up to RETRY_MAX_MS. */
const RETRY_MS = 1_000;
const RETRY_MAX_MS = 30_000;

export class CommandGate {
  /** the control plane's clock minus this one's, as last heard */
  private offsetMs = 0;
  private pending: CommandAck[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private failures = 0;

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
    if (this.pending.length > MAX_KEPT) {
      const dropped = this.pending.splice(0, this.pending.length - MAX_KEPT);
      this.log("warn", "dropped unconfirmed command answers (too many kept); the control plane marks them unanswered", { count: dropped.length });
    }
    if (this.flushing) return; // the running flush sends it too
    if (this.pending.length >= MAX_BATCH) return void this.flush();
    this.timer ??= setTimeout(() => void this.flush(), BATCH_MS);
  }

  /** Sends what waits (batch by batch); a batch whose send fails goes back to the front and is tried again later. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flushing ??= this.drain().finally(() => (this.flushing = null));
    return this.flushing;
  }

  /** A link opened: what is still unconfirmed goes now rather than at its backoff. */
  resend() {
    if (this.pending.length > 0) void this.flush();
  }

  /** Answers sent but not yet confirmed, and waiting ones. */
  get unconfirmed() {
    return this.pending.length;
  }

  private async drain() {
    while (this.pending.length > 0) {
      const batch = this.pending.slice(0, MAX_BATCH);
      try {
        await this.send(batch);
      } catch (e) {
        this.failures++;
        const delay = Math.min(RETRY_MS * 2 ** (this.failures - 1), RETRY_MAX_MS);
        this.log("debug", "could not send command answers; sending them again", { count: batch.length, retryInMs: delay, error: String(e) });
        this.timer ??= setTimeout(() => void this.flush(), delay);
        this.timer.unref?.();
        return;
      }
      this.failures = 0;
      // Confirmed: only now do they leave (answers added meanwhile went to the end; some may have been dropped).
      const sent = new Set(batch);
      this.pending = this.pending.filter((a) => !sent.has(a));
    }
  }

  stop() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
