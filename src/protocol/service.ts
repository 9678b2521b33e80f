/**
 * Services: long-running module instances on a device, supervised like a process
 * supervisor. The device object holds what is desired (the spec, running / suspended /
 * killed, the budget's reset count); the agent runs each service as a child process,
 * applies the restart budget itself and reports each service's actual status, CPU and
 * memory with its heartbeats. Life cycle: src/core/service-lifecycle.ts; restart budget:
 * src/core/restart-budget.ts; docs/services.md.
 */
import { z } from "zod";
import { DeviceId, Sha256Hex } from "./ids.js";
import { Arg } from "./wasm.js";
import { DeploymentId, ModuleName } from "./deployment.js";
import { LogLine } from "./job.js";
import { Selector } from "./selector.js";

/** Names a service on its device (used in URLs and as a directory name on the device). */
export const ServiceName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "1-63 of a-z 0-9 . _ - (not starting with . _ -)")
  .meta({ id: "ServiceName" });
export type ServiceName = z.infer<typeof ServiceName>;

const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "an environment variable name");

export const SERVICE_LIMITS = {
  maxServicesPerDevice: 64,
  maxArgs: 64,
  maxEnv: 64,
  /** lines kept per service in the ring (agent and control plane) */
  ringLines: 500,
  /** lines one heartbeat carries per service */
  linesPerBeat: 200,
  maxRestarts: 1000,
  maxDelayMs: 24 * 3600_000,
} as const;

const Ms = z.number().int().min(0).max(SERVICE_LIMITS.maxDelayMs);

/**
 * When a service that ended is started again (systemd's Restart= with StartLimitBurst,
 * RestartSteps/RestartMaxDelaySec; s6's permanent failure). The budget: at most
 * `maxRestarts` restarts within any `windowMs`; the delay before restart n (1-based
 * within the current run of failures) is initialDelayMs * 2^(n-1), capped at maxDelayMs.
 * A run that stays up `resetAfterMs` clears the count; a CRASHED service re-arms by
 * itself after `rearmAfterMs` (null: only a user's reset re-arms it).
 */
export const RestartPolicy = z
  .strictObject({
    /** always: restart after any end; on-failure: after a failure only (a clean exit is EXITED); never: a failure is CRASHED at once */
    mode: z.enum(["always", "on-failure", "never"]).default("on-failure"),
    maxRestarts: z.number().int().min(0).max(SERVICE_LIMITS.maxRestarts).default(5),
    windowMs: Ms.min(1).default(60_000),
    initialDelayMs: Ms.default(1_000),
    maxDelayMs: Ms.default(60_000),
    resetAfterMs: Ms.min(1).default(30_000),
    rearmAfterMs: Ms.min(1).nullable().default(600_000),
  })
  .refine((p) => p.maxDelayMs >= p.initialDelayMs, "maxDelayMs must be at least initialDelayMs")
  .meta({ id: "RestartPolicy" });
export type RestartPolicy = z.output<typeof RestartPolicy>;
export const DEFAULT_RESTART_POLICY: RestartPolicy = RestartPolicy.parse({});

/** Where the service's "." is: its own directory on the device, or a deployment's module directory. */
export const ServiceSandbox = z
  .union([z.literal("own"), z.strictObject({ deployment: DeploymentId, module: ModuleName })])
  .default("own")
  .meta({ id: "ServiceSandbox" });
export type ServiceSandbox = z.output<typeof ServiceSandbox>;

/** The fields of a service (ServiceSpec; a placement by selector adds `selector`). */
const SERVICE_FIELDS = {
  name: ServiceName,
  module: Sha256Hex,
  /** `_start` (a WASI command: args are its argv) or an exported function that runs until it returns (args are its arguments) */
  entry: z.string().min(1).max(256).default("_start"),
  args: z.array(Arg).max(SERVICE_LIMITS.maxArgs).default([]),
  /** variables set for the guest: nothing else of the device's environment reaches it */
  env: z.record(EnvName, z.string().max(4096)).default({}),
  /** names of the agent's own environment variables passed through (an allow-list) */
  envFrom: z.array(EnvName).max(SERVICE_LIMITS.maxEnv).default([]),
  restart: RestartPolicy.default(DEFAULT_RESTART_POLICY),
  /** created suspended (STOPPED): resume starts it */
  startStopped: z.boolean().default(false),
  /** a one-shot delayed start: PENDING until then (at most one of startAt, startAfterMs) */
  startAt: z.iso.datetime({ offset: true }).optional(),
  startAfterMs: z.number().int().min(1).max(366 * 24 * 3600_000).optional(),
  sandbox: ServiceSandbox,
};

/** The checks across fields, for every schema built from SERVICE_FIELDS. */
const checked = <T extends z.ZodType<{ startAt?: string; startAfterMs?: number; env: Record<string, string> }>>(schema: T) =>
  schema
    .refine((s) => !(s.startAt && s.startAfterMs), "give startAt or startAfterMs, not both")
    .refine((s) => Object.keys(s.env).length <= SERVICE_LIMITS.maxEnv, `at most ${SERVICE_LIMITS.maxEnv} env variables`);

/** What a user creates. */
export const ServiceSpec = checked(z.strictObject(SERVICE_FIELDS)).meta({ id: "ServiceSpec" });
export type ServiceSpec = z.output<typeof ServiceSpec>;

/** A service placed by selector (POST /v1/services): the healthy matching device holding the fewest services gets it. */
export const ServiceBySelector = checked(z.strictObject({ ...SERVICE_FIELDS, selector: Selector })).meta({ id: "ServiceBySelector" });
export type ServiceBySelector = z.output<typeof ServiceBySelector>;

/** The statuses (meanings and transitions: src/core/service-lifecycle.ts). */
export const ServiceStatus = z
  .enum(["PENDING", "STARTING", "RUNNING", "STOPPED", "BACKOFF", "EXITED", "KILLED", "CRASHED"])
  .meta({ id: "ServiceStatus" });
export type ServiceStatus = z.infer<typeof ServiceStatus>;

/** What the control plane wants of a service: started (`running`), suspended, or killed. */
export const ServiceDesired = z.enum(["running", "suspended", "killed"]).meta({ id: "ServiceDesired" });
export type ServiceDesired = z.infer<typeof ServiceDesired>;

/** The agent's word on one service, sent with every heartbeat. */
export const ServiceActual = z
  .object({
    name: ServiceName,
    /** the run (see DesiredService.run) this status is of */
    run: z.number().int().min(0),
    status: ServiceStatus,
    reason: z.string().max(500),
    exitCode: z.number().int().nullable(),
    restarts: z.number().int().min(0),
    lastError: z.string().max(2000).nullable(),
    startedAt: z.number().int().nullable(),
    /** BACKOFF: when it starts again */
    restartAt: z.number().int().nullable(),
    pid: z.number().int().nullable(),
    /** CPU time used by the current process (ms), and its share of one core since the last beat */
    cpuMs: z.number().min(0),
    cpuPercent: z.number().min(0),
    rssBytes: z.number().min(0),
    /** the budget resets this status has seen (see DesiredService.resets) */
    resets: z.number().int().min(0),
    /** output lines since the last beat */
    lines: z.array(LogLine).max(SERVICE_LIMITS.linesPerBeat).default([]),
  })
  .meta({ id: "ServiceActual" });
export type ServiceActual = z.output<typeof ServiceActual>;

/** One service as the agent must hold it. */
export const DesiredService = z
  .object({
    spec: ServiceSpec,
    desired: ServiceDesired,
    /** counts starts asked for (create, a schedule's occurrence, a restart): a new run starts the service afresh */
    run: z.number().int().min(0),
    /** counts budget resets asked for by users: a higher one than seen re-arms the budget */
    resets: z.number().int().min(0),
    /** the control plane already saw this run end for good (EXITED/CRASHED): an agent that lost its state does not start it again */
    ended: z.boolean(),
  })
  .meta({ id: "DesiredService" });
export type DesiredService = z.output<typeof DesiredService>;

export const DesiredServices = z
  .object({ version: z.number().int(), services: z.array(DesiredService) })
  .meta({ id: "DesiredServices" });
export type DesiredServices = z.output<typeof DesiredServices>;

/** A service as users see it: what is desired and what the agent last said. */
export const ServiceView = z
  .object({
    device: DeviceId,
    name: ServiceName,
    spec: ServiceSpec,
    desired: ServiceDesired,
    status: ServiceStatus,
    reason: z.string(),
    exitCode: z.number().int().nullable(),
    restarts: z.number().int(),
    lastError: z.string().nullable(),
    startedAt: z.string().nullable(),
    restartAt: z.string().nullable(),
    /** PENDING: when it starts */
    startAt: z.string().nullable(),
    pid: z.number().int().nullable(),
    cpuMs: z.number(),
    cpuPercent: z.number(),
    rssBytes: z.number(),
    run: z.number().int(),
    createdAt: z.string(),
    /** when the agent last reported this service (null: never): how fresh status is */
    reportedAt: z.string().nullable(),
  })
  .meta({ id: "Service" });
export type ServiceView = z.output<typeof ServiceView>;

export const ServiceList = z.object({ services: z.array(ServiceView) }).meta({ id: "ServiceList" });

export const ServiceLogs = z
  .object({ lines: z.array(LogLine.extend({ seq: z.number().int() })) })
  .meta({ id: "ServiceLogs" });

export const RemoveServices = z.strictObject({ names: z.array(ServiceName).min(1).max(SERVICE_LIMITS.maxServicesPerDevice) });
export const RemovedServices = z.object({ removed: z.array(ServiceName), absent: z.array(ServiceName) }).meta({ id: "RemovedServices" });
