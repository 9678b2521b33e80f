/**
 * Staged rollouts: a new version of a deployment goes to the devices a selector picks, in
 * waves, rate-limited, with a health gate after each wave (a soak in which every updated
 * device must apply it, keep sending heartbeats and keep its calls' error rate under a
 * threshold), and an automatic rollback of every updated device past a failure threshold.
 */
import { z } from "zod";
import { DeploymentId } from "./deployment.js";
import { DeviceId } from "./ids.js";
import { Selector } from "./selector.js";

export const RolloutId = DeploymentId;

/** A number of devices: `count`, or `percent` of the rollout's targets (exactly one). */
const Amount = z.object({
  count: z.number().int().min(0).max(100_000).optional(),
  percent: z.number().gt(0).max(100).optional(),
}).refine((a) => (a.count === undefined) !== (a.percent === undefined), "give either count or percent");
export type Amount = z.output<typeof Amount>;

export const RolloutStrategy = z.strictObject({
  /** the first wave's size (later waves: the same, or growing by exponentialRate) */
  waveSize: Amount,
  /** AWS IoT Jobs' exponentialRate: each wave is this many times the previous one */
  exponentialRate: z.strictObject({ incrementFactor: z.number().min(1.1).max(5) }).optional(),
  /** devices started per minute at most (AWS IoT Jobs' maximumPerMinute); default: no limit */
  maxPerMinute: z.number().int().min(1).max(100_000).optional(),
}).meta({ id: "RolloutStrategy" });
export type RolloutStrategy = z.output<typeof RolloutStrategy>;

export const RolloutGate = z.strictObject({
  /** after a wave's last device started: how long its devices must stay healthy before the next wave */
  soakMs: z.number().int().min(0).max(24 * 3_600_000).default(60_000),
  /** a device that has not applied the new version this long after it was sent fails */
  applyTimeoutMs: z.number().int().min(1_000).max(24 * 3_600_000).default(120_000),
  /** a device on the new version silent (no heartbeat) longer than this at the gate fails */
  maxSilenceMs: z.number().int().min(1_000).max(24 * 3_600_000).default(90_000),
  /** calls of the deployment on a device since it took the new version: failed / ended above this fails it */
  maxErrorRate: z.number().min(0).max(1).default(0.1),
  /** fewer ended calls than this: the error rate is not judged */
  minCalls: z.number().int().min(1).max(1_000_000).default(1),
  /** crashes and restarts of services on the new version (run in its module directory, or of one of its modules) on a device since it was sent it: more than this fails it */
  maxServiceCrashes: z.number().int().min(0).max(1_000_000).default(0),
}).meta({ id: "RolloutGate" });
export type RolloutGate = z.output<typeof RolloutGate>;

export const RolloutRollback = z.strictObject({
  /** more failed devices than this (count, or percent of the devices updated so far) rolls every updated device back */
  failureThreshold: Amount.default({ count: 0 }),
}).meta({ id: "RolloutRollback" });
export type RolloutRollback = z.output<typeof RolloutRollback>;

export const RolloutRequest = z.strictObject({
  /** default: the deployment's id and a time stamp */
  id: RolloutId.optional(),
  /** a compact JWS (like POST /v1/deployments) whose `deployment` claim is the new version's manifest, with a `selector` and no devices */
  deployment: z.string().min(1).max(256 * 1024),
  strategy: RolloutStrategy,
  gate: RolloutGate.default(RolloutGate.parse({})),
  rollback: RolloutRollback.default({ failureThreshold: { count: 0 } }),
}).meta({ id: "RolloutRequest" });
export type RolloutRequest = z.output<typeof RolloutRequest>;

export const RolloutState = z.enum(["running", "paused", "rolling_back", "rolled_back", "aborted", "committed"]);
export type RolloutState = z.infer<typeof RolloutState>;

export const RolloutDeviceState = z.enum(["pending", "updating", "healthy", "failed", "reverting", "reverted", "skipped"]);
export type RolloutDeviceState = z.infer<typeof RolloutDeviceState>;

/** The measures of the health gate; a failed device names the ones it failed (a rollback counts them). */
export const RolloutGateName = z.enum(["applied", "heartbeats", "callErrorRate", "serviceCrashes", "superseded"]).meta({ id: "RolloutGateName" });
export type RolloutGateName = z.infer<typeof RolloutGateName>;

/** What the gate measured on one device. */
export const DeviceHealthSample = z.object({
  deploymentState: z.string().nullable(),
  deploymentReason: z.string().nullable(),
  generation: z.number().int().nullable(),
  silentMs: z.number().nullable(),
  calls: z.number().int(),
  failedCalls: z.number().int(),
  /** services on the new version the device holds now */
  services: z.number().int().default(0),
  /** crashes and restarts of services on the new version since the device was sent it, and which services (at most 10 named) */
  serviceCrashes: z.number().int().default(0),
  crashedServices: z.array(z.string()).default([]),
});
export type DeviceHealthSample = z.infer<typeof DeviceHealthSample>;

export const RolloutView = z.object({
  id: RolloutId,
  namespace: z.string(),
  deployment: DeploymentId,
  state: RolloutState,
  selector: Selector,
  strategy: RolloutStrategy,
  gate: RolloutGate,
  rollback: RolloutRollback,
  createdAt: z.string(),
  updatedAt: z.string(),
  /** devices the selector picked when the rollout was created */
  targets: z.number().int(),
  counts: z.record(RolloutDeviceState, z.number().int()),
  waves: z.array(z.object({
    index: z.number().int(),
    size: z.number().int(),
    state: z.enum(["waiting", "deploying", "soaking", "passed", "failed", "skipped"]),
    startedAt: z.string().nullable(),
    soakUntil: z.string().nullable(),
    gate: z.object({ evaluatedAt: z.string(), healthy: z.number().int(), failed: z.number().int(), pending: z.number().int() }).nullable(),
  })),
  devices: z.array(z.object({
    device: DeviceId,
    wave: z.number().int(),
    state: RolloutDeviceState,
    previousGeneration: z.number().int().nullable(),
    generation: z.number().int().nullable(),
    startedAt: z.string().nullable(),
    reasons: z.array(z.string()),
    /** the gate's measures this device failed (empty unless failed) */
    gates: z.array(RolloutGateName),
    sample: DeviceHealthSample.nullable(),
  })),
  /** every decision, oldest first: what was done and why */
  decisions: z.array(z.object({ at: z.string(), decision: z.string(), detail: z.string() })),
  /** set when the rollout rolled back: who or which gate, on which numbers */
  rollbackReason: z.object({
    by: z.enum(["gate", "operator"]),
    wave: z.number().int().nullable(),
    failed: z.number().int(),
    updated: z.number().int(),
    threshold: z.string(),
    /** which measures tripped: failed devices per gate measure (a device may fail several) */
    tripped: z.partialRecord(RolloutGateName, z.number().int()),
    devices: z.array(z.object({ device: DeviceId, gates: z.array(RolloutGateName), reasons: z.array(z.string()) })),
  }).nullable(),
}).meta({ id: "Rollout" });
export type RolloutView = z.infer<typeof RolloutView>;

export const RolloutAction = z.enum(["pause", "resume", "abort", "rollback"]);
export type RolloutAction = z.infer<typeof RolloutAction>;

/** One row of GET /v1/rollouts (GET /v1/rollouts/:id has the waves, devices and decisions). */
export const RolloutListItem = z.object({
  id: RolloutId,
  namespace: z.string(),
  deployment: DeploymentId,
  state: RolloutState,
  targets: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
}).meta({ id: "RolloutListItem" });
export type RolloutListItem = z.infer<typeof RolloutListItem>;

export const RolloutList = z.object({
  rollouts: z.array(RolloutListItem),
  /** pass as `cursor` for the next (older) page; null at the end */
  nextCursor: z.string().nullable(),
}).meta({ id: "RolloutList" });
