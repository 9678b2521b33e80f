/**
 * Schedules: a cron expression in an IANA time zone, or a one-shot time, that starts a job
 * (or, once services exist, a service) on one device, fired once per occurrence. The rules
 * (next occurrence, what is due, the missed-occurrence policy) are in src/core/schedule.ts;
 * docs/schedules.md explains them.
 */
import { z } from "zod";
import { DeviceId, JobId } from "./ids.js";
import { JobSubmission } from "./job.js";

export const ScheduleId = z
  .string()
  .regex(/^s[a-z2-7]{16}$/, "a schedule id looks like s + 16 base32 characters");
export type ScheduleId = z.infer<typeof ScheduleId>;

export const SCHEDULE_LIMITS = {
  maxCronLength: 200,
  /** a one-shot start at most a year ahead */
  maxAheadMs: 366 * 24 * 60 * 60_000,
  defaultGraceMs: 60_000,
  maxGraceMs: 24 * 60 * 60_000,
  /** schedules per device */
  maxPerDevice: 100,
  /**
   * The least time between two occurrences of a cron schedule, by target: each job occurrence
   * queues a job, each service occurrence restarts a process on the device.
   */
  minIntervalMs: { job: 10_000, service: 60_000 },
} as const;

/** Repeats: a cron expression (5 fields, or 6 with seconds first) read in an IANA time zone. */
export const CronTiming = z.strictObject({
  cron: z.string().min(1).max(SCHEDULE_LIMITS.maxCronLength).meta({ description: "minute hour day-of-month month day-of-week, or seconds first (6 fields); @hourly, @daily, ... too", examples: ["*/15 * * * *"] }),
  timezone: z.string().min(1).max(64).default("UTC").meta({ description: "IANA time zone the expression is read in, e.g. Europe/Berlin", examples: ["Europe/Berlin"] }),
}).meta({ id: "CronTiming" });

/** Once, at a time. */
export const AtTiming = z.strictObject({
  at: z.iso.datetime({ offset: true }).meta({ description: "the one occurrence (must be in the future)" }),
}).meta({ id: "AtTiming" });

/** Once, after a delay from the schedule's creation. */
export const AfterTiming = z.strictObject({
  afterMs: z.number().int().min(1).max(SCHEDULE_LIMITS.maxAheadMs).meta({ description: "milliseconds from creation to the one occurrence" }),
}).meta({ id: "AfterTiming" });

export const ScheduleTiming = z.union([CronTiming, AtTiming, AfterTiming]).meta({ id: "ScheduleTiming" });
export type ScheduleTiming = z.output<typeof ScheduleTiming>;

/**
 * What happens to occurrences whose time passed without a run of their own (the control
 * plane fired late, or the device was away): `skip` runs an occurrence only within
 * `graceMs` of its time (a run not started by then expires, never runs late); `catch-up-once`
 * runs once for everything missed.
 */
export const MissedPolicy = z.enum(["skip", "catch-up-once"]).meta({ id: "MissedPolicy" });
export type MissedPolicy = z.infer<typeof MissedPolicy>;

/** A job on this schedule's device: the submission of POST /v1/jobs without `device`, `deadline` and `start` (a scheduled job is queued). */
export const JobTarget = z.strictObject({
  kind: z.literal("job"),
  submission: JobSubmission.omit({ device: true, deadline: true, start: true }),
}).meta({ id: "ScheduleJobTarget" });

/** A service on this schedule's device, started once per occurrence. */
export const ServiceTarget = z.strictObject({
  kind: z.literal("service"),
  serviceId: z.string().min(1).max(64),
}).meta({ id: "ScheduleServiceTarget" });

export const ScheduleTarget = z.discriminatedUnion("kind", [JobTarget, ServiceTarget]).meta({ id: "ScheduleTarget" });
export type ScheduleTarget = z.output<typeof ScheduleTarget>;

export const ScheduleCreate = z.strictObject({
  name: z.string().max(120).optional(),
  timing: ScheduleTiming,
  target: ScheduleTarget,
  missed: MissedPolicy.default("skip"),
  graceMs: z.number().int().min(1000).max(SCHEDULE_LIMITS.maxGraceMs).default(SCHEDULE_LIMITS.defaultGraceMs).meta({ description: "how late an occurrence may still start (skip policy)" }),
  paused: z.boolean().default(false).meta({ description: "create it paused: nothing fires until it is resumed" }),
}).meta({ id: "ScheduleCreate" });
export type ScheduleCreate = z.output<typeof ScheduleCreate>;
export type ScheduleCreateInput = z.input<typeof ScheduleCreate>;

export const ScheduleStatus = z.enum(["active", "paused", "done"]).meta({ id: "ScheduleStatus", description: "done: a one-shot whose occurrence has passed" });

export const ScheduleView = z.object({
  id: ScheduleId,
  device: DeviceId,
  name: z.string().nullable(),
  status: ScheduleStatus,
  timing: z.union([CronTiming, z.object({ at: z.string() })]),
  target: ScheduleTarget,
  missed: MissedPolicy,
  graceMs: z.number().int(),
  /** when the next occurrence is (null: none, or paused) */
  nextAt: z.string().nullable(),
  /** the last occurrence that got a run: its id (schedule id @ scheduled time), when it was due, the job it made */
  lastFired: z.object({ occurrence: z.string(), scheduledAt: z.string(), firedAt: z.string(), job: JobId.nullable() }).nullable(),
  /** occurrences that got no run of their own (skipped, or folded into one catch-up run) */
  missedCount: z.number().int(),
  /** why the last occurrence got no run (e.g. the namespace now requires signed jobs), or why the schedule was paused by the object; null once an occurrence runs */
  reason: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
}).meta({ id: "ScheduleView" });
export type ScheduleView = z.infer<typeof ScheduleView>;

export const ScheduleList = z.object({ schedules: z.array(ScheduleView) }).meta({ id: "ScheduleList" });
