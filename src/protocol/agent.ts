/**
 * The agent <-> device object contract. Every delivery is a lease: the agent
 * quotes the lease token when it acknowledges or reports, and a report with a
 * stale token changes nothing.
 */
import { z } from "zod";
import { Arg } from "./wasm.js";
import { JobId, Sha256Hex } from "./ids.js";
import { FailureKind, JobResult, LIMITS, LogLine } from "./job.js";
import { Health } from "./device.js";
import { CallContext } from "./deployment.js";
import { SERVICE_LIMITS, ServiceActual } from "./service.js";

/**
 * Fencing: every agent session has an epoch, assigned by the device object when the agent opens the
 * session (`POST /v1/agent/session`), one higher than any before. The agent sends it with every request
 * (this header, also on the WebSocket upgrade); anything from an older epoch is refused (409, problem
 * type `fenced`; over the socket a `fenced` message and close code 4009). No header counts as epoch 0,
 * which is current only until a device's first session opens.
 */
export const EPOCH_HEADER = "x-wasmvisor-epoch";
/** The socket's close code when a newer session took the device over. */
export const FENCED_CLOSE_CODE = 4009;
export const Epoch = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
export const EpochHeaders = z.object({
  [EPOCH_HEADER]: Epoch.optional().meta({ type: "integer", description: "the agent session's epoch (POST /v1/agent/session); absent: 0" }),
});
export const AgentSessionOpened = z.object({
  epoch: z.number().int().min(1),
  /** the epoch it replaced (0: none opened before) */
  previous: z.number().int().min(0),
  serverTime: z.number().int(),
}).meta({ id: "AgentSessionOpened" });
export type AgentSessionOpened = z.infer<typeof AgentSessionOpened>;

/**
 * Bounded commands: everything the device object tells the agent to do (a job push, a cancel, a
 * deployments change, and the generic `command` message services and rollouts reuse) carries an id and
 * an expiry (the control plane's clock, ms). The agent acks or nacks each (with a reason); one that
 * arrives after its expiry is discarded, never applied late, and answered `expired`. The device object
 * records each outcome (`GET /v1/devices/{id}/commands`); one never answered by its expiry is `unanswered`.
 */
export const CommandRef = z.object({ id: z.string().min(1).max(64), expiresAt: z.number().int() }).meta({ id: "CommandRef" });
export type CommandRef = z.infer<typeof CommandRef>;
export const CommandAck = z.object({
  id: z.string().min(1).max(64),
  /** acked: applied (or taken in hand); nacked: refused, see reason; expired: arrived after its expiry, discarded */
  outcome: z.enum(["acked", "nacked", "expired"]),
  reason: z.string().max(500).optional(),
});
export type CommandAck = z.infer<typeof CommandAck>;
export const CommandAcks = z.strictObject({ acks: z.array(CommandAck).min(1).max(64) });
export const CommandState = z.enum(["sent", "acked", "nacked", "expired", "unanswered"]);
export const CommandView = z.object({
  id: z.string(),
  /** jobs, cancel, deployments, or a generic command's kind */
  kind: z.string(),
  /** what it is about: job ids, a deployments version, ... */
  subject: z.string(),
  sentAt: z.string(),
  expiresAt: z.string(),
  /** sent: no answer yet; unanswered: none came by its expiry */
  state: CommandState,
  reason: z.string().nullable(),
  answeredAt: z.string().nullable(),
}).meta({ id: "Command" });
export type CommandView = z.infer<typeof CommandView>;

export const LeasedJob = z.object({
  jobId: JobId,
  leaseToken: z.string(),
  leaseExpiresAt: z.number().int(),
  attempt: z.number().int(),
  module: Sha256Hex,
  function: z.string(),
  args: z.array(Arg),
  timeoutMs: z.number().int(),
  /** a call of a deployed function: runs in that deployment's sandbox directory, with its files */
  call: CallContext.optional(),
  /** W3C traceparent of the request that submitted the job: the agent logs its trace id and sends it back */
  traceparent: z.string().max(128).optional(),
});
export type LeasedJob = z.infer<typeof LeasedJob>;

/** `deployments`: the desired-state version (see DesiredDeployments), so a polling agent notices changes. */
export const Delivery = z.object({ jobs: z.array(LeasedJob), serverTime: z.number().int(), deployments: z.number().int().optional(), services: z.number().int().optional(), cmd: CommandRef.optional() });
export type Delivery = z.infer<typeof Delivery>;

export const LeaseRef = z.object({ jobId: JobId, leaseToken: z.string().max(64) });
export type LeaseRef = z.infer<typeof LeaseRef>;

/**
 * `started`: jobs the agent began running (their lease becomes timeout + grace).
 * `held`: jobs it has received but not started yet (their short lease is renewed).
 */
export const Ack = z
  .strictObject({
    started: z.array(LeaseRef).max(LIMITS.maxPollBatch).default([]),
    held: z.array(LeaseRef).max(LIMITS.maxPollBatch).default([]),
  })
  .refine((a) => a.started.length + a.held.length > 0, "name at least one lease in started or held");
export type Ack = z.output<typeof Ack>;

export const ResultReport = LeaseRef.extend({
  /** rejected: the device cannot run it at all (a missing host interface, a module over its memory cap) */
  outcome: z.enum(["succeeded", "failed", "timed_out", "rejected"]),
  result: JobResult.nullable(),
  error: z.object({ kind: FailureKind, message: z.string().max(4096) }).nullable(),
  /** output lines not yet sent while the job ran */
  logs: z.array(LogLine).max(LIMITS.maxLogLines).default([]),
  /** the job's traceparent as delivered, with the agent's span: the result belongs to the same trace */
  traceparent: z.string().max(128).optional(),
});
export type ResultReport = z.infer<typeof ResultReport>;

/** Output lines of a running job, sent while it runs. */
export const LogBatch = LeaseRef.extend({ lines: z.array(LogLine).min(1).max(1000) });
export type LogBatch = z.infer<typeof LogBatch>;

export const ResultBatch = z.strictObject({ results: z.array(ResultReport).min(1).max(LIMITS.maxPollBatch) });
export type ResultBatch = z.infer<typeof ResultBatch>;

export const ReportDisposition = z.enum(["accepted", "duplicate", "stale"]);
export const ResultBatchResponse = z.object({
  dispositions: z.array(z.object({ jobId: z.string(), disposition: ReportDisposition })),
});

/** One of the agent's own log lines, shipped with heartbeats so operators can read them centrally. */
export const AgentLogLine = z.object({
  at: z.number(),
  level: z.enum(["debug", "info", "warn", "error"]),
  msg: z.string().max(500),
  fields: z.string().max(2000).optional(),
});
export type AgentLogLine = z.infer<typeof AgentLogLine>;
export const MAX_SHIPPED_AGENT_LINES = 200;

export const Heartbeat = z.strictObject({
  health: Health,
  runningJobs: z.array(LeaseRef).max(LIMITS.maxPollBatch).default([]),
  logs: z.array(AgentLogLine).max(MAX_SHIPPED_AGENT_LINES).default([]),
  /** each service's actual status, CPU, memory and new output lines (docs/services.md) */
  services: z.array(ServiceActual).max(SERVICE_LIMITS.maxServicesPerDevice).default([]),
});
export type Heartbeat = z.infer<typeof Heartbeat>;

export const PollQuery = z.object({
  wait: z.coerce.number().int().min(0).max(30).default(25).meta({ type: "integer", description: "seconds to hold the poll open" }),
  max: z.coerce.number().int().min(1).max(LIMITS.maxPollBatch).default(16),
});

/**
 * The push transport: one WebSocket between the agent and its device object.
 * `credit` is how many more jobs the agent can take now; the object pushes
 * at most that many. Requests that need an answer carry an `id` echoed back.
 */
export const AgentMessage = z.discriminatedUnion("t", [
  z.object({ t: z.literal("credit"), free: z.number().int().min(0).max(LIMITS.maxPollBatch) }),
  z.object({
    t: z.literal("started"),
    /** given: the object answers `acked` with this id (the agent retries until it does) */
    id: z.number().int().optional(),
    started: z.array(LeaseRef).max(LIMITS.maxPollBatch).default([]),
    held: z.array(LeaseRef).max(LIMITS.maxPollBatch).default([]),
  }),
  z.object({
    t: z.literal("results"),
    id: z.number().int(),
    results: z.array(ResultReport).min(1).max(LIMITS.maxPollBatch),
    free: z.number().int().min(0).max(LIMITS.maxPollBatch),
  }),
  z.object({
    t: z.literal("heartbeat"),
    id: z.number().int(),
    health: Health,
    runningJobs: z.array(LeaseRef).max(LIMITS.maxPollBatch),
    logs: z.array(AgentLogLine).max(MAX_SHIPPED_AGENT_LINES).default([]),
    services: z.array(ServiceActual).max(SERVICE_LIMITS.maxServicesPerDevice).default([]),
  }),
  LogBatch.extend({ t: z.literal("logs") }),
  /** given `id`: the object answers `command-acks-recorded` with it once the answers are stored (the agent resends until it does) */
  z.object({ t: z.literal("command-acks"), id: z.number().int().optional(), acks: CommandAcks.shape.acks }),
]);
export type AgentMessage = z.infer<typeof AgentMessage>;

export const ServerMessage = z.discriminatedUnion("t", [
  z.object({ t: z.literal("jobs"), jobs: z.array(LeasedJob), cmd: CommandRef.optional() }),
  z.object({ t: z.literal("reported"), id: z.number().int(), dispositions: ResultBatchResponse.shape.dispositions }),
  z.object({ t: z.literal("acked"), id: z.number().int(), started: z.number().int(), held: z.number().int() }),
  /** the command answers of request `id` are stored; `recorded`: how many changed a command (a resent answer changes none) */
  z.object({ t: z.literal("command-acks-recorded"), id: z.number().int(), recorded: z.number().int() }),
  z.object({ t: z.literal("heartbeat-ack"), id: z.number().int(), cancel: z.array(z.string()), deployments: z.number().int().optional(), services: z.number().int().optional() }),
  /** the desired deployments changed: fetch them (GET /v1/agent/deployments) when `version` is not the one applied */
  z.object({ t: z.literal("deployments"), version: z.number().int(), cmd: CommandRef.optional() }),
  /** the desired services changed: fetch them (GET /v1/agent/services) when `version` is not the one applied (a hint; heartbeats answer it too) */
  z.object({ t: z.literal("services"), version: z.number().int() }),
  z.object({ t: z.literal("cancel"), jobIds: z.array(z.string()), cmd: CommandRef.optional() }),
  /** the generic bounded command (services, rollouts): `kind` names the handler, `body` its input */
  z.object({ t: z.literal("command"), cmd: CommandRef, kind: z.string().min(1).max(64), body: z.unknown() }),
  z.object({ t: z.literal("error"), message: z.string() }),
  /** this socket's session was taken over by a newer one (`current`): the agent must stop; the socket closes with 4009 */
  z.object({ t: z.literal("fenced"), epoch: z.number().int(), current: z.number().int(), message: z.string() }),
]);
export type ServerMessage = z.infer<typeof ServerMessage>;

/** Application-level keepalive, answered by the runtime without waking a hibernated object. */
export const WS_PING = "ping";
export const WS_PONG = "pong";
