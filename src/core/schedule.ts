/**
 * The decisions of schedules, pure (no I/O, the time is always passed in): checking an
 * expression and a time zone, the next occurrence after a time, an occurrence's id, and which
 * occurrence (if any) is due at `now` under the missed-occurrence policy. Cron arithmetic
 * (time zones, DST) is croner's; see docs/schedules.md.
 */
import { Cron } from "croner";
import type { MissedPolicy } from "../protocol/schedule.js";

/** A schedule's timing once created: a cron expression in a zone, or one instant. */
export type Timing = { cron: string; timezone: string } | { at: number };

export type Checked = { ok: true } | { ok: false; path: string; message: string };

/** Whether `zone` is an IANA time zone this runtime knows. */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

function cronOf(expr: string, timezone: string): Cron {
  return new Cron(expr, { timezone, paused: true });
}

/**
 * Checks a cron expression and its zone: 5 fields (minute first) or 6 (seconds first) or a
 * nickname (@hourly ...), a known IANA zone, at least one occurrence ahead of `now`, and
 * (given `minIntervalMs`) no two occurrences closer than that.
 */
export function checkCron(expr: string, timezone: string, now: number, minIntervalMs?: number): Checked {
  if (!isTimeZone(timezone)) return { ok: false, path: "timing.timezone", message: `"${timezone}" is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)` };
  const trimmed = expr.trim();
  const fields = trimmed.split(/\s+/).length;
  if (!trimmed.startsWith("@") && fields !== 5 && fields !== 6) {
    return { ok: false, path: "timing.cron", message: `"${expr}" has ${fields} field(s); a cron expression has 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)` };
  }
  let cron: Cron;
  try {
    cron = cronOf(trimmed, timezone);
  } catch (e) {
    return { ok: false, path: "timing.cron", message: `"${expr}" is not a cron expression: ${(e as Error).message.replace(/^CronPattern: /, "")}` };
  }
  if (cron.nextRun(new Date(now)) === null) return { ok: false, path: "timing.cron", message: `"${expr}" never occurs` };
  if (minIntervalMs !== undefined) {
    const gap = shortestGap(cron, now);
    if (gap !== null && gap < minIntervalMs) {
      return { ok: false, path: "timing.cron", message: `"${expr}" has occurrences ${gap / 1000} s apart; a schedule's occurrences must be at least ${minIntervalMs / 1000} s apart` };
    }
  }
  return { ok: true };
}

/** Occurrences looked at to find the shortest gap of an expression (its short gaps show within its first cycles). */
export const GAP_SAMPLES = 200;

/** The shortest time between consecutive occurrences among the next GAP_SAMPLES after `now` (null: fewer than two). */
function shortestGap(cron: Cron, now: number): number | null {
  const runs = cron.nextRuns(GAP_SAMPLES, new Date(now)).map((d) => d.getTime());
  let min: number | null = null;
  for (let i = 1; i < runs.length; i++) min = Math.min(min ?? Infinity, runs[i]! - runs[i - 1]!);
  return min;
}

/** The first occurrence strictly after `after` (epoch ms), or null when there is none. */
export function nextOccurrence(timing: Timing, after: number): number | null {
  if ("at" in timing) return timing.at > after ? timing.at : null;
  return cronOf(timing.cron, timing.timezone).nextRun(new Date(after))?.getTime() ?? null;
}

/** The last occurrence at or before `at` that is after `after`, or null. */
export function latestOccurrence(timing: Timing, after: number, at: number): number | null {
  if ("at" in timing) return timing.at > after && timing.at <= at ? timing.at : null;
  // croner's previous runs are strictly before the reference.
  const prev = cronOf(timing.cron, timing.timezone).previousRuns(1, new Date(at + 1))[0]?.getTime();
  return prev !== undefined && prev > after ? prev : null;
}

/** Missed occurrences are counted up to this many per decision (a per-second schedule down for a day would otherwise cost 86,400 steps). */
export const MAX_COUNTED = 1000;

/** How many occurrences lie in (after, through], counting at most `cap` (then answering cap). */
export function countOccurrences(timing: Timing, after: number, through: number, cap = MAX_COUNTED): number {
  if ("at" in timing) return timing.at > after && timing.at <= through ? 1 : 0;
  const cron = cronOf(timing.cron, timing.timezone);
  let n = 0;
  let t = after;
  while (n < cap) {
    const next = cron.nextRun(new Date(t))?.getTime();
    if (next === undefined || next > through) break;
    n++;
    t = next;
  }
  return n;
}

/** An occurrence's id: the schedule and the scheduled instant (a retried fire names the same one). */
export const occurrenceId = (scheduleId: string, scheduledAt: number) => `${scheduleId}@${new Date(scheduledAt).toISOString()}`;

export interface Due {
  /** the occurrence to run now (its scheduled time), or null */
  fire: number | null;
  /** occurrences in the window that get no run of their own */
  missed: number;
  /** every occurrence up to here is handled (fired or missed); the next one is after it */
  handledThrough: number;
}

/**
 * Which occurrence is due at `now`, given that everything up to `handledThrough` was handled.
 * All occurrences in (handledThrough, now] are handled by this one decision:
 * - skip: the latest runs if `now` is within `graceMs` of it; every other one is missed.
 * - catch-up-once: the latest runs, standing for all of them (the others are missed).
 */
export function dueAt(timing: Timing, policy: MissedPolicy, graceMs: number, handledThrough: number, now: number): Due {
  const latest = latestOccurrence(timing, handledThrough, now);
  if (latest === null) return { fire: null, missed: 0, handledThrough };
  const count = countOccurrences(timing, handledThrough, now);
  const runs = policy === "catch-up-once" || now - latest < graceMs;
  return { fire: runs ? latest : null, missed: Math.max(count - (runs ? 1 : 0), 0), handledThrough: latest };
}
