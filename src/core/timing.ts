/** Lease expiry, retry backoff, presence and the one-alarm multiplexer: pure, clock passed in. */

export interface LeaseSettings {
  /** how long a delivered job may wait for the agent's "started" before it is redelivered */
  ackTimeoutMs: number;
  /** slack after the job's own timeout before a silent agent is presumed lost */
  graceMs: number;
}

export const DEFAULT_LEASE_SETTINGS: LeaseSettings = { ackTimeoutMs: 10_000, graceMs: 5_000 };

/**
 * A delivery that nobody acknowledges (the long-poll client may already be
 * gone, and the object is not told) expires quickly; once the agent says it
 * started, the lease lasts the job's timeout plus grace, since the agent
 * enforces the timeout itself.
 */
export function leaseExpiry(nowMs: number, phase: "delivered" | "started", timeoutMs: number, s: LeaseSettings): number {
  return phase === "delivered" ? nowMs + s.ackTimeoutMs : nowMs + timeoutMs + s.graceMs;
}

/** Exponential backoff with "equal jitter": half fixed, half random, capped. */
export function retryDelayMs(attempt: number, random: number, baseMs = 1_000, capMs = 60_000): number {
  const exp = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (exp / 2) * Math.min(1, Math.max(0, random)));
}

export function isOnline(lastSeenMs: number | null, nowMs: number, heartbeatTimeoutMs: number): boolean {
  return lastSeenMs !== null && nowMs - lastSeenMs < heartbeatTimeoutMs;
}

/** A Durable Object has one alarm: it fires at the earliest of its timers. */
export function nextAlarm(candidates: readonly (number | null | undefined)[]): number | null {
  let min: number | null = null;
  for (const c of candidates) if (c != null && (min === null || c < min)) min = c;
  return min;
}
