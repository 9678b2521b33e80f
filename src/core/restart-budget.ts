/**
 * The restart budget, as a pure decision: given a service's policy, its budget so far
 * and how its process ended, restart it at a time (growing delays), leave it EXITED, or
 * mark it CRASHED with the reason; and when a CRASHED service re-arms. The agent applies
 * it locally (also while the control plane is unreachable). Modelled on systemd
 * (StartLimitBurst/StartLimitIntervalSec, RestartSteps/RestartMaxDelaySec) and s6 (a
 * permanent failure), with what they lack: a run that stayed up long enough forgets its
 * earlier failures, and a spent budget re-arms after a cool-off, so a fleet recovers
 * from an outage by itself (unlike Azure IoT Edge's permanent stop after 20 failures).
 */
import type { RestartPolicy } from "../protocol/service.js";

export interface BudgetState {
  /** when each restart counted against the budget happened (within the window, oldest first) */
  restarts: number[];
  /** failures in a row (the backoff's exponent); a long enough run clears it */
  streak: number;
  /** when the budget was spent (CRASHED), else null */
  crashedAt: number | null;
}

export const FRESH_BUDGET: BudgetState = { restarts: [], streak: 0, crashedAt: null };

export interface ProcessEnd {
  /** when the process ended */
  at: number;
  /** when that run started (null: it never started, e.g. the module could not be loaded) */
  startedAt: number | null;
  /** a failure (non-zero exit, trap, signal, could not start), or a clean end */
  failed: boolean;
  /** what happened, for the reason shown to users */
  what: string;
}

export type BudgetDecision =
  | { action: "restart"; at: number; delayMs: number; budget: BudgetState; reason: string }
  | { action: "exited"; budget: BudgetState; reason: string }
  | { action: "crashed"; budget: BudgetState; reason: string; rearmAt: number | null };

/** The delay before the n-th restart in a row (n from 1): initialDelayMs doubling, capped at maxDelayMs. */
export function backoffDelay(policy: RestartPolicy, n: number): number {
  const delay = policy.initialDelayMs * 2 ** Math.min(Math.max(n - 1, 0), 40);
  return Math.min(policy.maxDelayMs, delay);
}

/** Restarts still counted at `now`: those within the window. */
export function restartsInWindow(policy: RestartPolicy, budget: BudgetState, now: number): number[] {
  return budget.restarts.filter((t) => t > now - policy.windowMs);
}

const secs = (ms: number) => `${Math.round(ms / 100) / 10}s`;

/** What happens after a process ended. */
export function afterExit(policy: RestartPolicy, budget: BudgetState, end: ProcessEnd): BudgetDecision {
  // A run that stayed up long enough forgets the failures before it.
  const stayedUp = end.startedAt !== null && end.at - end.startedAt >= policy.resetAfterMs;
  const base: BudgetState = stayedUp ? { ...FRESH_BUDGET } : { ...budget, restarts: restartsInWindow(policy, budget, end.at), crashedAt: null };
  if (!end.failed && policy.mode !== "always") return { action: "exited", budget: { ...base, streak: 0 }, reason: end.what };
  if (end.failed && policy.mode === "never") {
    return { action: "crashed", budget: { ...base, crashedAt: end.at }, reason: `${end.what}; the restart policy is never`, rearmAt: null };
  }
  if (base.restarts.length >= policy.maxRestarts) {
    const rearmAt = policy.rearmAfterMs === null ? null : end.at + policy.rearmAfterMs;
    return {
      action: "crashed",
      budget: { ...base, crashedAt: end.at },
      reason: `${end.what}; restart budget spent (${base.restarts.length} of ${policy.maxRestarts} restarts within ${secs(policy.windowMs)})${rearmAt === null ? "" : `; re-arms after ${secs(policy.rearmAfterMs!)}`}`,
      rearmAt,
    };
  }
  const streak = end.failed ? base.streak + 1 : 1;
  const delayMs = backoffDelay(policy, streak);
  const at = end.at + delayMs;
  return {
    action: "restart",
    at,
    delayMs,
    budget: { restarts: [...base.restarts, at], streak, crashedAt: null },
    reason: `${end.what}; restart ${base.restarts.length + 1} of ${policy.maxRestarts} in ${secs(delayMs)}`,
  };
}

/** When a CRASHED service re-arms by itself (null: never, or it is not crashed). */
export function rearmAt(policy: RestartPolicy, budget: BudgetState): number | null {
  if (budget.crashedAt === null || policy.mode === "never" || policy.rearmAfterMs === null) return null;
  return budget.crashedAt + policy.rearmAfterMs;
}

/** A re-armed budget: the count and the backoff start over. */
export function rearmed(): BudgetState {
  return { ...FRESH_BUDGET, restarts: [] };
}
