/** Jobs as the API shows them. The life cycle rules live in src/core/lifecycle.ts. */
import { z } from "zod";
import { Arg, ResultValue } from "./wasm.js";
import { DeviceId, JobId, Sha256Hex } from "./ids.js";
import { Selector } from "./selector.js";

export const JOB_STATES = [
  "CREATED",
  "QUEUED",
  "LEASED",
  "RUNNING",
  "SUCCEEDED",
  "FAILED",
  "TIMED_OUT",
  "CANCELED",
  "EXPIRED",
  "REJECTED",
] as const;
export const JobState = z.enum(JOB_STATES);
export type JobState = z.infer<typeof JobState>;

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELED", "EXPIRED", "REJECTED"]);
export const isTerminal = (s: JobState) => TERMINAL_STATES.has(s);

export const LIMITS = {
  maxArgs: 64,
  maxTimeoutMs: 15 * 60_000,
  defaultTimeoutMs: 30_000,
  maxAttempts: 20,
  defaultMaxAttempts: 3,
  maxWaitSeconds: 60,
  /** per stream, per job */
  maxCapturedOutputBytes: 64 * 1024,
  maxModuleBytes: 32 * 1024 * 1024,
  maxJsonBodyBytes: 256 * 1024,
  maxPollBatch: 256,
  maxBatchJobs: 1000,
  /** kept per job; further lines are dropped and the truncation is marked */
  maxLogLines: 5000,
  maxLogLineBytes: 4096,
  maxBatchBodyBytes: 1024 * 1024,
} as const;

export const FunctionName = z.string().min(1).max(256);

export const JobSubmission = z.strictObject({
  device: DeviceId,
  module: Sha256Hex.describe("sha256 of a module uploaded with POST /v1/modules"),
  function: FunctionName,
  args: z.array(Arg).max(LIMITS.maxArgs).default([]),
  timeoutMs: z.number().int().min(1).max(LIMITS.maxTimeoutMs).default(LIMITS.defaultTimeoutMs),
  maxAttempts: z.number().int().min(1).max(LIMITS.maxAttempts).default(LIMITS.defaultMaxAttempts),
  priority: z.number().int().min(-1000).max(1000).default(0),
  /** Work not started by then is EXPIRED, never run. */
  deadline: z.iso.datetime({ offset: true }).optional(),
  /** false: create the job without queueing it (CREATED); start it later with POST /v1/jobs/:id/start */
  start: z.boolean().default(true),
}).meta({ id: "JobSubmission" });
export type JobSubmission = z.output<typeof JobSubmission>;
export type JobSubmissionInput = z.input<typeof JobSubmission>;

/**
 * What happens to a job whose device stops sending heartbeats (Nomad's disconnect block):
 * wait (the default: it runs when the device is back), expire it, or move it to another
 * device the job's selector picks, once the device has been silent for `afterMs`.
 */
export const OfflinePolicy = z.strictObject({
  onOffline: z.enum(["wait", "expire", "move"]),
  afterMs: z.number().int().min(1_000).max(7 * 24 * 3_600_000).default(60_000),
}).meta({ id: "OfflinePolicy" });
export type OfflinePolicy = z.output<typeof OfflinePolicy>;

/** POST /v1/jobs: a submission for one device, or for the least-loaded healthy device a selector picks. */
export const JobRequest = JobSubmission.extend({
  device: DeviceId.optional(),
  /** instead of `device`: the least-loaded healthy device that matches (422 with each candidate's reasons when none does) */
  selector: Selector.optional(),
  failover: OfflinePolicy.optional(),
}).superRefine((j, ctx) => {
  if ((j.device === undefined) === (j.selector === undefined)) ctx.addIssue({ code: "custom", path: ["device"], message: "give either device or selector" });
  if (j.failover?.onOffline === "move" && !j.selector) ctx.addIssue({ code: "custom", path: ["failover", "onOffline"], message: "move needs a selector to pick another device" });
}).meta({ id: "JobRequest" });
export type JobRequest = z.output<typeof JobRequest>;

export const JobOutcome = z.enum(["succeeded", "failed", "timed_out", "rejected"]);
export type JobOutcome = z.infer<typeof JobOutcome>;

/** Failure kinds tell retryable failures (the device or time) from the job's own faults. */
export const FailureKind = z.enum([
  "trap",
  "bad-arguments",
  "missing-function",
  "link-error",
  "module-unavailable",
  "memory-limit",
  "timeout",
  "exit",
  "lease-expired",
  "deadline",
  "canceled",
  "internal",
  "device-offline",
]);
export type FailureKind = z.infer<typeof FailureKind>;

/** A file a job wrote (a deployment function's output mount), as the agent reported it. */
export const WrittenFile = z.object({ name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/), size: z.number().int().nonnegative() });

export const JobResult = z.object({
  /** the function's return value as JSON (see resultToJson) */
  value: ResultValue,
  /** output files, uploaded before the result; served at /v1/jobs/:id/outputs/:name */
  files: z.array(WrittenFile).max(16).optional(),
  exitCode: z.number().int().nullable(),
  stdout: z.string(),
  stderr: z.string(),
  stdoutTruncated: z.boolean(),
  stderrTruncated: z.boolean(),
  durationMs: z.number(),
}).meta({ id: "JobResult" });
export type JobResult = z.infer<typeof JobResult>;

export const JobError = z.object({ kind: FailureKind, message: z.string() }).meta({ id: "JobError" });
export type JobError = z.infer<typeof JobError>;

/** Where a chain step's output went: a job on a device here, a result URL outside, or why it could not go. */
export const NextLink = z.object({ job: JobId.optional(), url: z.string().optional(), error: z.string().optional() });
export type NextLink = z.infer<typeof NextLink>;

export const ChainView = z.object({
  /** succeeded only when the last step did; failed as soon as any step did */
  state: z.enum(["running", "succeeded", "failed"]),
  steps: z.array(z.object({ job: JobId.nullable(), device: DeviceId.nullable(), url: z.string().nullable(), state: z.string(), error: z.string().nullable() })),
});
export type ChainView = z.infer<typeof ChainView>;

export const JobView = z.object({
  id: JobId,
  device: DeviceId,
  state: JobState,
  module: Sha256Hex,
  function: z.string(),
  args: z.array(Arg),
  priority: z.number().int(),
  timeoutMs: z.number().int(),
  attempts: z.number().int(),
  maxAttempts: z.number().int(),
  deadline: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  /** W3C trace id of the request that submitted the job (GET /v1/audit and the logs carry the same) */
  traceId: z.string().nullable().optional(),
  result: JobResult.nullable(),
  error: JobError.nullable(),
  links: z.object({ self: z.string(), result: z.string() }),
  /** a call of a deployed function */
  call: z.object({ deployment: z.string(), module: z.string(), instance: z.enum(["fresh", "deployment"]), hasNext: z.boolean(), prev: z.string().nullable() }).optional(),
  /** its output files, each at a stable URL of this job */
  outputs: z.array(z.object({ name: z.string(), size: z.number().int(), mediaType: z.string(), url: z.string() })).optional(),
  /** a chain: where this step's output went */
  next: NextLink.optional(),
  /** on the first step of a chain: every step and the chain's state */
  chain: ChainView.optional(),
  /** its offline policy, and (once its device was silent past afterMs) what was done: expired, or moved to another job */
  failover: z.object({
    onOffline: z.enum(["expire", "move"]),
    afterMs: z.number().int(),
    /** when the policy fired (null: not yet) */
    firedAt: z.string().nullable(),
    /** the job that replaces this one on another device (move) */
    movedTo: JobId.nullable(),
    /** why it has not moved yet (no device matched), or what was done */
    note: z.string().nullable(),
  }).optional(),
}).meta({ id: "Job" });
export type JobView = z.infer<typeof JobView>;

export const jobLinks = (id: string) => ({ self: `/v1/jobs/${id}`, result: `/v1/jobs/${id}/result` });

export const JobBatch = z.strictObject({ jobs: z.array(JobSubmission).min(1).max(LIMITS.maxBatchJobs) });

export const JobRef = z.object({ id: JobId, device: DeviceId, state: JobState, links: z.object({ self: z.string(), result: z.string() }) }).meta({ id: "JobRef" });
export type JobRef = z.infer<typeof JobRef>;

export const LogLine = z.object({
  /** epoch milliseconds when the guest wrote it */
  at: z.number(),
  stream: z.enum(["stdout", "stderr"]),
  line: z.string().max(LIMITS.maxLogLineBytes),
});
export type LogLine = z.infer<typeof LogLine>;

export const JobLogs = z.object({
  lines: z.array(LogLine.extend({ seq: z.number().int() })),
  truncated: z.boolean(),
  done: z.boolean(),
});
export type JobLogs = z.infer<typeof JobLogs>;

/** A submission as the Worker hands it to the device object: with the submitting request's W3C traceparent. */
export type TracedSubmission = JobSubmission & { traceparent?: string | null };
