/**
 * The streaming submission channel (GET /v1/jobs/channel, docs/protocol.md): one WebSocket
 * per caller that carries job submissions and their answers as JSON messages. Each
 * submission is handled exactly as `POST /v1/jobs` would handle it (same validation,
 * credential, role and namespace checks, idempotency keys and body limit); the channel only
 * saves the HTTP request per job.
 */
import { z } from "zod";
import { LIMITS } from "./job.js";
import { Problem } from "./problem.js";

export const CHANNEL_LIMITS = {
  /** submissions a connection may have unanswered at once; one more is refused (429 message) */
  maxInFlight: 256,
  /** one message, as `POST /v1/jobs` limits its body */
  maxMessageBytes: LIMITS.maxJsonBodyBytes,
  /** the caller's own reference for a submission, echoed in its answer */
  maxRefLength: 64,
} as const;

/** client -> server: one job, as the body of `POST /v1/jobs`, with the query's wait and the Idempotency-Key header as fields. */
export const ChannelSubmit = z.object({
  type: z.literal("submit"),
  /** the caller's reference, unique among its submissions in flight: the answer carries it back */
  ref: z.string().min(1).max(CHANNEL_LIMITS.maxRefLength),
  /** the job, exactly the body `POST /v1/jobs` takes (JobRequest); checked by that route */
  job: z.record(z.string(), z.unknown()),
  /** seconds to wait for the job to end before answering (as ?wait=) */
  wait: z.number().min(0).max(LIMITS.maxWaitSeconds).default(LIMITS.maxWaitSeconds),
  /** as the Idempotency-Key header */
  idempotencyKey: z.string().min(1).max(200).optional(),
}).meta({ id: "ChannelSubmit" });
export type ChannelSubmit = z.infer<typeof ChannelSubmit>;

/** server -> client, once when the channel opens: its limits. */
export const ChannelReady = z.object({
  type: z.literal("ready"),
  maxInFlight: z.number().int(),
  maxMessageBytes: z.number().int(),
}).meta({ id: "ChannelReady" });

/**
 * server -> client, once per submission: `status` is what `POST /v1/jobs` would have
 * answered (200 ended within the wait, 202 still queued or running), `job` its JobView.
 */
export const ChannelResultMessage = z.object({
  type: z.literal("result"),
  ref: z.string(),
  status: z.union([z.literal(200), z.literal(202)]),
  replayed: z.boolean(),
  job: z.record(z.string(), z.unknown()).meta({ description: "a JobView" }),
}).meta({ id: "ChannelResult" });

/**
 * server -> client: a submission refused (once, instead of its result), or a message that
 * could not be read at all (`ref` null). The connection stays open unless the credential
 * stopped being valid.
 */
export const ChannelErrorMessage = z.object({
  type: z.literal("error"),
  ref: z.string().nullable(),
  status: z.number().int(),
  problem: Problem,
}).meta({ id: "ChannelError" });

export const ChannelServerMessage = z.discriminatedUnion("type", [ChannelReady, ChannelResultMessage, ChannelErrorMessage]);
export type ChannelServerMessage = z.infer<typeof ChannelServerMessage>;
