/**
 * Degraded mode: whether the control plane can be reached, since when and why not. While it cannot,
 * the agent keeps working from what it holds (jobs in hand, the cached desired state), keeps results,
 * health samples and its log lines in the outbox, and says so: once in its log when it enters and
 * leaves the mode, and in every health sample (`degraded: {since, reason}`). When the control plane is
 * back it reconciles (`recovered`): the outbox is flushed and the desired state fetched again.
 */
import type { AgentLog } from "./agent-log.js";

export type DegradedState = { since: string; reason: string };

export class Degraded {
  private down: { since: number; reason: string } | null = null;

  constructor(
    private readonly log: AgentLog,
    private readonly on: {
      /** the control plane cannot be reached: keep everything on disk from now on */
      entered(): void;
      /** the control plane answered again after an outage: reconcile */
      recovered(downForMs: number): void;
    },
    private readonly now: () => number = Date.now,
  ) {}

  /** Degraded since when and why (undefined while the control plane answers). */
  get state(): DegradedState | undefined {
    return this.down ? { since: new Date(this.down.since).toISOString(), reason: this.down.reason } : undefined;
  }

  get active(): boolean {
    return this.down !== null;
  }

  /** A request could not reach the control plane (refused, reset, timed out, a 5xx from a proxy). */
  unreachable(reason: string) {
    if (this.down) return;
    this.down = { since: this.now(), reason: reason.slice(0, 500) };
    this.log("warn", "control plane unreachable: degraded mode, working from the cached desired state and keeping reports in the outbox", { reason: this.down.reason });
    this.on.entered();
  }

  /** The control plane answered. */
  reachable() {
    if (!this.down) return;
    const downForMs = this.now() - this.down.since;
    this.down = null;
    this.log("info", "control plane reachable again: leaving degraded mode and reconciling", { degradedForMs: downForMs });
    this.on.recovered(downForMs);
  }
}
