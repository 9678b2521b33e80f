/** When what ended jobs leave behind is due to go (docs/retention.md): pure, clock passed in. */
import type { Retention } from "../protocol/signing.js";

/** At most this many jobs, and this many idempotency keys, go in one alarm run; the rest in the next. */
export const RETENTION_BATCH = 500;

/** A backlog is worked off in runs this far apart, so retention never holds the object for long. */
export const RETENTION_PAUSE_MS = 1_000;

/** Jobs that ended, and keys made, at or before these times are past retention at `nowMs`. */
export function retentionCutoffs(nowMs: number, r: Retention): { endedBefore: number; keysBefore: number } {
  return { endedBefore: nowMs - r.endedJobsSeconds * 1000, keysBefore: nowMs - r.idempotencySeconds * 1000 };
}

/** When the next run is due, from the oldest ended job and the oldest key (null: nothing to wait for). */
export function retentionDue(nowMs: number, r: Retention, oldestEndedAt: number | null, oldestKeyAt: number | null): number | null {
  const due = [
    oldestEndedAt === null ? null : oldestEndedAt + r.endedJobsSeconds * 1000,
    oldestKeyAt === null ? null : oldestKeyAt + r.idempotencySeconds * 1000,
  ].filter((t): t is number => t !== null);
  if (due.length === 0) return null;
  return Math.max(Math.min(...due), nowMs + RETENTION_PAUSE_MS);
}
