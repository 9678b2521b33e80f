/**
 * The device's schedules: cron expressions (in a time zone) and one-shot times that start a
 * job on this device, or a service through the handler the services part registers. Their
 * due times are behind the object's one alarm (registered with the timers); each firing
 * handles every occurrence up to now in ONE transaction with what it starts, so a retried
 * alarm or a restart between occurrences never runs an occurrence twice nor skips one
 * unaccounted (docs/schedules.md, "Exactly once").
 */
import type { Sql } from "./sql-object.js";
import { fail, ok, type Outcome } from "./rpc.js";
import type { AlarmTimers } from "./alarm-timers.js";
import type { DevicePresence } from "./device-presence.js";
import type { JobLifecycle } from "./job-lifecycle.js";
import type { JobStore } from "./job-store.js";
import type { Clock } from "../core/clock.js";
import { sha256Hex } from "../core/crypto.js";
import { iso } from "../core/time.js";
import { dueAt, nextOccurrence, occurrenceId, type Timing } from "../core/schedule.js";
import { derivedJobId, randomBase32 } from "../protocol/ids.js";
import { missingInterfaces } from "../protocol/wasm.js";
import { JobSubmission } from "../protocol/job.js";
import { SCHEDULE_LIMITS, type MissedPolicy, type ScheduleCreate, type ScheduleTarget, type ScheduleView } from "../protocol/schedule.js";

export const SCHEDULES_TABLE = `
CREATE TABLE schedules (
  id              TEXT PRIMARY KEY,
  name            TEXT,
  cron            TEXT,
  timezone        TEXT,
  at              INTEGER,
  target          TEXT NOT NULL,
  requires        TEXT NOT NULL DEFAULT '[]',
  policy          TEXT NOT NULL,
  grace_ms        INTEGER NOT NULL,
  paused          INTEGER NOT NULL DEFAULT 0,
  handled_through INTEGER NOT NULL,
  next_at         INTEGER,
  last_occurrence TEXT,
  last_scheduled  INTEGER,
  last_fired_at   INTEGER,
  last_job        TEXT,
  missed          INTEGER NOT NULL DEFAULT 0,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at) WHERE paused = 0 AND next_at IS NOT NULL;
`;

type ScheduleRow = {
  id: string;
  name: string | null;
  cron: string | null;
  timezone: string | null;
  at: number | null;
  target: string;
  requires: string;
  policy: MissedPolicy;
  grace_ms: number;
  paused: number;
  handled_through: number;
  next_at: number | null;
  last_occurrence: string | null;
  last_scheduled: number | null;
  last_fired_at: number | null;
  last_job: string | null;
  missed: number;
  reason: string | null;
  failures: number;
  created_at: number;
  updated_at: number;
};

/**
 * How a service-target schedule starts its service: registered by the services part
 * (device-parts.ts). It runs inside the firing's transaction, so it must be synchronous
 * and idempotent by occurrence id.
 */
export interface ScheduledServiceStarter {
  /** Whether the service exists on this device (checked when the schedule is created, when given). */
  exists?(serviceId: string): boolean;
  /**
   * Starts the service for this occurrence. Synchronous (it runs inside the firing's
   * transaction); answering `{ ok: false }` (an Outcome) means it did not start: the
   * occurrence counts as missed.
   */
  startFromSchedule(serviceId: string, occurrenceId: string, now: number): unknown;
}

/** Whether a starter's answer says the service did not start. */
const refused = (answer: unknown) => typeof answer === "object" && answer !== null && (answer as { ok?: unknown }).ok === false;

/**
 * After an unexpected error with one schedule, it is tried again this much later (the others
 * go on): well within the default grace, so a passing fault does not cost a skip-policy run.
 */
export const RETRY_AFTER_ERROR_MS = 5_000;
/** Each further failure in a row doubles the wait, up to this. */
export const MAX_RETRY_DELAY_MS = 15 * 60_000;
/** After this many failed firings in a row the schedule is paused, with the last error as its reason (resume tries again). */
export const MAX_FIRING_FAILURES = 8;

export interface SchedulesParts {
  sql: Sql;
  transaction: (fn: () => void) => void;
  clock: Clock;
  timers: AlarmTimers;
  presence: DevicePresence;
  store: JobStore;
  lifecycle: JobLifecycle;
  /** hands ready jobs to the agent */
  dispatch: () => void;
  /**
   * Whether the device's namespace accepts only signed jobs (read from the registry, outside
   * the firing's transaction). A schedule's runs are not signed: while this holds, no
   * occurrence starts anything (it counts as missed, with a reason).
   */
  signedOnly: () => Promise<boolean>;
}

export const SIGNED_ONLY_REASON = "the device's namespace accepts only signed jobs (requireSignedJobs), and a schedule's runs are not signed";

const timingOf = (r: ScheduleRow): Timing => (r.cron !== null ? { cron: r.cron, timezone: r.timezone! } : { at: r.at! });

export class Schedules {
  private services: ScheduledServiceStarter | null = null;

  constructor(private readonly p: SchedulesParts) {}

  /** The services part registers how a schedule starts a service (until then such schedules are refused). */
  setServiceStarter(starter: ScheduledServiceStarter) {
    this.services = starter;
  }

  /** The earliest occurrence of an active schedule (for the alarm). */
  nextDue(): number | null {
    return this.p.sql.one<{ t: number | null }>("SELECT MIN(next_at) AS t FROM schedules WHERE paused = 0 AND next_at IS NOT NULL")?.t ?? null;
  }

  /**
   * A new schedule. The cron expression and zone were checked by the Worker (core/schedule.ts
   * checkCron); a one-shot's time is checked here against this object's clock. `requires`:
   * the host interfaces the job's module imports.
   */
  create(input: ScheduleCreate, requires: string[]): Outcome<ScheduleView> {
    const now = this.p.clock.now();
    const count = this.p.sql.one<{ n: number }>("SELECT COUNT(*) AS n FROM schedules")?.n ?? 0;
    if (count >= SCHEDULE_LIMITS.maxPerDevice) return fail("unprocessable", `a device holds at most ${SCHEDULE_LIMITS.maxPerDevice} schedules; delete one first`);
    if (input.target.kind === "service") {
      if (!this.services) return fail("unprocessable", "this device object has no services part wired (device-parts.ts)");
      if (this.services.exists && !this.services.exists(input.target.serviceId)) return fail("not-found", `no service ${input.target.serviceId} on this device`);
    }
    const t = input.timing;
    let timing: Timing;
    if ("cron" in t) timing = { cron: t.cron.trim(), timezone: t.timezone };
    else {
      const at = "at" in t ? Date.parse(t.at) : now + t.afterMs;
      if (at <= now) return fail("unprocessable", `the time ${iso(at)} has already passed`);
      if (at - now > SCHEDULE_LIMITS.maxAheadMs) return fail("unprocessable", "a one-shot time must be within a year");
      timing = { at };
    }
    const next = nextOccurrence(timing, now);
    if (next === null) return fail("unprocessable", "this schedule has no occurrence ahead");
    const id = "s" + randomBase32(16);
    this.p.sql.run`INSERT INTO schedules (id, name, cron, timezone, at, target, requires, policy, grace_ms, paused, handled_through, next_at, created_at, updated_at)
      VALUES (${id}, ${input.name ?? null}, ${"cron" in timing ? timing.cron : null}, ${"cron" in timing ? timing.timezone : null}, ${"at" in timing ? timing.at : null},
              ${JSON.stringify(input.target)}, ${JSON.stringify(requires)}, ${input.missed}, ${input.graceMs}, ${input.paused ? 1 : 0}, ${now}, ${next}, ${now}, ${now})`;
    if (!input.paused) this.p.timers.wakeBy(next);
    return ok(this.view(this.row(id)!));
  }

  list(): ScheduleView[] {
    return this.p.sql.all<ScheduleRow>("SELECT * FROM schedules ORDER BY created_at, id").map((r) => this.view(r));
  }

  get(id: string): Outcome<ScheduleView> {
    const row = this.row(id);
    return row ? ok(this.view(row)) : fail("not-found", `no schedule ${id}`);
  }

  /**
   * Pauses or resumes. Occurrences while paused are not run nor counted missed: resuming
   * starts from now (a one-shot whose time passed while paused is then done).
   */
  setPaused(id: string, paused: boolean): Outcome<ScheduleView> {
    const row = this.row(id);
    if (!row) return fail("not-found", `no schedule ${id}`);
    if ((row.paused === 1) === paused) return ok(this.view(row));
    const now = this.p.clock.now();
    if (paused) {
      this.p.sql.run`UPDATE schedules SET paused = 1, updated_at = ${now} WHERE id = ${id}`;
    } else {
      const handled = Math.max(row.handled_through, now);
      const next = nextOccurrence(timingOf(row), handled);
      this.p.sql.run`UPDATE schedules SET paused = 0, handled_through = ${handled}, next_at = ${next}, failures = 0, reason = NULL, updated_at = ${now} WHERE id = ${id}`;
      if (next !== null) this.p.timers.wakeBy(next);
    }
    return ok(this.view(this.row(id)!));
  }

  /** Deletes the schedule; jobs it already started are left as they are. */
  remove(id: string): Outcome<{ id: string }> {
    return this.p.sql.run`DELETE FROM schedules WHERE id = ${id}` > 0 ? ok({ id }) : fail("not-found", `no schedule ${id}`);
  }

  /**
   * From the alarm: handles every active schedule whose next occurrence is due by `now`.
   * Answers how many runs it started.
   */
  async fire(now: number): Promise<number> {
    const due = this.p.sql.all<ScheduleRow>("SELECT * FROM schedules WHERE paused = 0 AND next_at IS NOT NULL AND next_at <= ? ORDER BY next_at", now);
    if (due.length === 0) return 0;
    // Read before any transaction (it needs the registry). If it cannot be read, nothing fires
    // now: every due schedule is retried as after an error.
    let signedOnly: boolean;
    try {
      signedOnly = await this.p.signedOnly();
    } catch (e) {
      console.error(JSON.stringify({ level: "error", msg: "schedule firing: namespace settings unreadable", error: String(e) }));
      for (const seen of due) this.p.sql.run`UPDATE schedules SET next_at = ${now + RETRY_AFTER_ERROR_MS} WHERE id = ${seen.id}`;
      return 0;
    }
    let started = 0;
    for (const seen of due) {
      try {
        const decision = dueAt(timingOf(seen), seen.policy, seen.grace_ms, seen.handled_through, now);
        const occurrence = decision.fire === null ? null : occurrenceId(seen.id, decision.fire);
        // The job id follows from the occurrence: whatever happens, an occurrence names one job.
        const jobId = occurrence ? derivedJobId(this.p.presence.device!.id, await sha256Hex(`schedule-occurrence\n${occurrence}`)) : null;
        this.p.transaction(() => {
          // Re-read: a pause, resume or delete may have come in while the id was hashed.
          const row = this.row(seen.id);
          if (!row || row.updated_at !== seen.updated_at || row.paused === 1) return;
          if (this.fireOne(row, decision, occurrence, jobId, now, signedOnly)) started++;
        });
      } catch (e) {
        // Nothing of this schedule's firing was stored (the transaction rolled back): it stays
        // due and is tried again later, without holding up the other schedules or the alarm.
        console.error(JSON.stringify({ level: "error", msg: "schedule firing failed", scheduleId: seen.id, error: String(e) }));
        this.failed(seen.id, String(e), now);
      }
    }
    if (started > 0) this.p.dispatch();
    return started;
  }

  /**
   * A firing of `id` threw: it is tried again after a delay that doubles with each failure in
   * a row (from RETRY_AFTER_ERROR_MS), and after MAX_FIRING_FAILURES it is paused with the
   * error as its reason, instead of being retried every few seconds forever.
   */
  private failed(id: string, error: string, now: number) {
    const row = this.row(id);
    if (!row) return;
    const failures = row.failures + 1;
    if (failures >= MAX_FIRING_FAILURES) {
      const reason = `paused after ${failures} failed firings in a row; last error: ${error}`.slice(0, 500);
      this.p.sql.run`UPDATE schedules SET paused = 1, failures = ${failures}, reason = ${reason}, updated_at = ${now} WHERE id = ${id}`;
      console.error(JSON.stringify({ level: "error", msg: "schedule paused after failed firings", scheduleId: id, failures }));
      return;
    }
    const delay = Math.min(RETRY_AFTER_ERROR_MS * 2 ** (failures - 1), MAX_RETRY_DELAY_MS);
    const reason = `firing failed (${failures} of ${MAX_FIRING_FAILURES} in a row before it is paused): ${error}`.slice(0, 500);
    // updated_at is left as it was: it marks user changes a firing must not overwrite.
    this.p.sql.run`UPDATE schedules SET next_at = ${now + delay}, failures = ${failures}, reason = ${reason} WHERE id = ${id}`;
  }

  /** One schedule's decision, applied inside the firing's transaction. Answers whether it started a run. */
  private fireOne(row: ScheduleRow, decision: ReturnType<typeof dueAt>, occurrence: string | null, jobId: string | null, now: number, signedOnly: boolean): boolean {
    const next = nextOccurrence(timingOf(row), Math.max(decision.handledThrough, now));
    let missed = decision.missed;
    let fired: { occurrence: string; scheduled: number; job: string | null } | null = null;
    let reason = row.reason;
    if (decision.fire !== null && occurrence) {
      const target = JSON.parse(row.target) as ScheduleTarget;
      if (signedOnly) {
        missed++; // made before the namespace required signatures: its unsigned runs are refused now
        reason = SIGNED_ONLY_REASON;
      } else if (target.kind === "job") {
        if (this.waitingJob(row.last_job)) {
          missed++; // the earlier run has not started yet (device away or busy): it stands for this occurrence too
        } else {
          this.startJob(row, target, jobId!, decision.fire, now);
          fired = { occurrence, scheduled: decision.fire, job: jobId };
        }
      } else if (this.services) {
        if (refused(this.services.startFromSchedule(target.serviceId, occurrence, now))) missed++;
        else fired = { occurrence, scheduled: decision.fire, job: null };
      } else {
        missed++; // services are not on this control plane (cannot be created so; kept safe)
      }
    }
    if (fired) {
      this.p.sql.run`UPDATE schedules SET handled_through = ${decision.handledThrough}, next_at = ${next}, missed = missed + ${missed}, reason = NULL, failures = 0,
        last_occurrence = ${fired.occurrence}, last_scheduled = ${fired.scheduled}, last_fired_at = ${now}, last_job = ${fired.job}, updated_at = ${now} WHERE id = ${row.id}`;
    } else {
      this.p.sql.run`UPDATE schedules SET handled_through = ${decision.handledThrough}, next_at = ${next}, missed = missed + ${missed}, reason = ${reason}, failures = 0, updated_at = ${now} WHERE id = ${row.id}`;
    }
    return fired !== null;
  }

  /** Whether the schedule's last job is still waiting for its first start. */
  private waitingJob(jobId: string | null): boolean {
    if (!jobId) return false;
    const row = this.p.store.row(jobId);
    return row !== undefined && (row.state === "CREATED" || (row.state === "QUEUED" && row.attempts === 0));
  }

  /** Queues the occurrence's job (through the life cycle, as a submission would); an id already here is left as it is. */
  private startJob(row: ScheduleRow, target: Extract<ScheduleTarget, { kind: "job" }>, jobId: string, scheduled: number, now: number) {
    if (this.p.store.state(jobId)) return;
    const spec = JobSubmission.parse({ ...target.submission, device: this.p.presence.device!.id, start: true });
    // skip: a run that cannot start within the grace expires instead of running late.
    const deadline = row.policy === "skip" ? scheduled + row.grace_ms : null;
    const missing = missingInterfaces(JSON.parse(row.requires) as string[], this.p.presence.interfaces());
    if (missing.length > 0) this.p.lifecycle.rejectAtIntake(jobId, spec, deadline, now, missing);
    else this.p.lifecycle.enqueue(jobId, spec, deadline, now);
    if (deadline !== null) this.p.timers.wakeBy(deadline);
  }

  private row(id: string): ScheduleRow | undefined {
    return this.p.sql.one<ScheduleRow>("SELECT * FROM schedules WHERE id = ?", id);
  }

  private view(r: ScheduleRow): ScheduleView {
    return {
      id: r.id,
      device: this.p.presence.device!.id,
      name: r.name,
      status: r.paused === 1 ? "paused" : r.next_at === null ? "done" : "active",
      timing: r.cron !== null ? { cron: r.cron, timezone: r.timezone! } : { at: iso(r.at!) },
      target: JSON.parse(r.target) as ScheduleTarget,
      missed: r.policy,
      graceMs: r.grace_ms,
      nextAt: r.paused === 1 ? null : iso(r.next_at),
      lastFired: r.last_occurrence
        ? { occurrence: r.last_occurrence, scheduledAt: iso(r.last_scheduled!), firedAt: iso(r.last_fired_at!), job: r.last_job }
        : null,
      missedCount: r.missed,
      reason: r.reason,
      createdAt: iso(r.created_at),
      updatedAt: iso(r.updated_at),
    };
  }
}
