/** Devices: the capability description (wasmiot's shape, extended), health and views. */
import { z } from "zod";
import { DeviceId } from "./ids.js";

/** wasmiot's `wasmiot-device-description.json`, with our additions under `capabilities`. */
export const DeviceDescription = z.object({
  platform: z.object({
    memory: z.object({ bytes: z.number().nonnegative() }),
    cpu: z.object({
      humanReadableName: z.string().max(256),
      clockSpeed: z.object({ Hz: z.number().nonnegative() }),
      cores: z.number().int().positive().optional(),
      arch: z.string().max(64).optional(),
    }),
    os: z.object({ type: z.string().max(64), release: z.string().max(128) }).optional(),
  }),
  /** Host functions the agent really links into modules (WASI preview1 names). */
  supervisorInterfaces: z.array(z.string().max(128)).max(512),
  capabilities: z
    .object({
      cameras: z.array(z.string().max(128)).max(64).default([]),
      sensors: z.array(z.string().max(128)).max(256).default([]),
      labels: z.record(z.string().max(64), z.string().max(256)).default({}),
    })
    .default({ cameras: [], sensors: [], labels: {} }),
  agent: z.object({ version: z.string().max(64), node: z.string().max(64), poolSize: z.number().int().positive() }).optional(),
}).meta({ id: "DeviceDescription" });
export type DeviceDescription = z.infer<typeof DeviceDescription>;

export const Health = z.object({
  cpuPercent: z.number().min(0).max(100),
  memoryUsedBytes: z.number().nonnegative(),
  memoryTotalBytes: z.number().nonnegative(),
  loadAverage: z.tuple([z.number(), z.number(), z.number()]),
  uptimeSeconds: z.number().nonnegative(),
  diskFreeBytes: z.number().nonnegative(),
  jobsRunning: z.number().int().nonnegative(),
  agentRssBytes: z.number().nonnegative().optional(),
  /** the agent could not reach the control plane when it took this sample (degraded mode): since when, and why */
  degraded: z.object({ since: z.string().max(40), reason: z.string().max(500) }).optional(),
}).meta({ id: "Health" });
export type Health = z.infer<typeof Health>;

export const DeviceRegistration = z.strictObject({
  name: z.string().min(1).max(128).regex(/^[\w.-]+$/, "letters, digits, _ . - only").optional(),
  description: DeviceDescription,
});
export type DeviceRegistration = z.infer<typeof DeviceRegistration>;

export const DeviceStatus = z.enum(["online", "offline"]);
export type DeviceStatus = z.infer<typeof DeviceStatus>;

export const DeviceView = z.object({
  id: DeviceId,
  namespace: z.string(),
  name: z.string().nullable(),
  status: DeviceStatus,
  description: DeviceDescription,
  health: Health.extend({ at: z.string() }).nullable(),
  registeredAt: z.string(),
  lastSeenAt: z.string().nullable(),
  queue: z.object({ queued: z.number().int(), running: z.number().int() }).optional(),
  /** drained devices get no new work (Hero's runner.stop) */
  drained: z.boolean().optional(),
  /** the device's services as its agent last reported them (GET /v1/devices/{id}/services has the rest) */
  services: z.array(z.object({ name: z.string(), status: z.string(), cpuPercent: z.number(), rssBytes: z.number() })).optional(),
  /** the agent session now in charge (fencing): its epoch, when it opened, and how many requests of older sessions were refused since */
  session: z.object({ epoch: z.number().int(), openedAt: z.string(), refused: z.number().int() }).nullable().optional(),
  /** how fresh this view is: when it was read, how long the agent has been silent, whether that is past the heartbeat timeout */
  freshness: z.object({
    asOf: z.string(),
    silentMs: z.number().nullable(),
    heartbeatTimeoutMs: z.number(),
    stale: z.boolean(),
    healthAgeMs: z.number().nullable(),
  }).optional(),
  /** desired state (what the control plane wants here) against actual (what the agent last reported), and why they differ */
  reconcile: z.object({
    desiredVersion: z.number().int(),
    /** the desired-state version the agent last fetched (null: never), and when */
    fetchedVersion: z.number().int().nullable(),
    fetchedAt: z.string().nullable(),
    /** the agent's last report on its deployments, and what it said */
    lastReconcileAt: z.string().nullable(),
    lastReconcileReason: z.string().nullable(),
    deployments: z.array(z.object({
      deployment: z.string(),
      desiredGeneration: z.number().int(),
      appliedGeneration: z.number().int().nullable(),
      state: z.string(),
      reason: z.string().nullable(),
      updatedAt: z.string(),
    })),
    /** what is not as desired, one line each (empty: in sync) */
    drift: z.array(z.string()),
    inSync: z.boolean(),
  }).optional(),
}).meta({ id: "Device" });
export type DeviceView = z.infer<typeof DeviceView>;

export const RegistrationResult = z.object({ deviceId: DeviceId, credential: z.string() });
