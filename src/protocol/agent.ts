/**
 * The agent <-> device object contract. Every delivery is a lease: the agent
 * quotes the lease token when it acknowledges or reports, and a report with a
 * stale token changes nothing.
 */
import { z } from "zod";
import { Arg } from "./wasm.js";
import { JobId, Sha256Hex } from "./ids.js";
import { FailureKind, JobResult, LIMITS } from "./job.js";
import { Health } from "./device.js";

export const LeasedJob = z.object({
  jobId: JobId,
  leaseToken: z.string(),
  leaseExpiresAt: z.number().int(),
  attempt: z.number().int(),
  module: Sha256Hex,
  function: z.string(),
  args: z.array(Arg),
  timeoutMs: z.number().int(),
});
export type LeasedJob = z.infer<typeof LeasedJob>;

export const Delivery = z.object({ jobs: z.array(LeasedJob), serverTime: z.number().int() });
export type Delivery = z.infer<typeof Delivery>;

export const LeaseRef = z.object({ jobId: JobId, leaseToken: z.string().max(64) });
export type LeaseRef = z.infer<typeof LeaseRef>;

export const Ack = z.strictObject({ started: z.array(LeaseRef).min(1).max(LIMITS.maxPollBatch) });

export const ResultReport = LeaseRef.extend({
  outcome: z.enum(["succeeded", "failed", "timed_out"]),
  result: JobResult.nullable(),
  error: z.object({ kind: FailureKind, message: z.string().max(4096) }).nullable(),
});
export type ResultReport = z.infer<typeof ResultReport>;

export const ResultBatch = z.strictObject({ results: z.array(ResultReport).min(1).max(LIMITS.maxPollBatch) });
export type ResultBatch = z.infer<typeof ResultBatch>;

export const ReportDisposition = z.enum(["accepted", "duplicate", "stale"]);
export const ResultBatchResponse = z.object({
  dispositions: z.array(z.object({ jobId: z.string(), disposition: ReportDisposition })),
});

export const Heartbeat = z.strictObject({ health: Health, runningJobs: z.array(LeaseRef).max(LIMITS.maxPollBatch).default([]) });
export type Heartbeat = z.infer<typeof Heartbeat>;

export const PollQuery = z.object({
  wait: z.coerce.number().int().min(0).max(30).default(25),
  max: z.coerce.number().int().min(1).max(LIMITS.maxPollBatch).default(16),
});
