/**
 * Deployments: a manifest places named modules on devices, describes each
 * callable function (its parameters by name, input files, result, output
 * files) and installs data files with it. The control plane splits it into one
 * part per device; each device object keeps its parts as desired state and the
 * agent reports what it has applied.
 */
import { z } from "zod";
import { DeviceId, JobId, Sha256Hex } from "./ids.js";
import { LIMITS } from "./job.js";
import { Selector } from "./selector.js";

/** Used in URLs and as directory names on devices, so kept to a safe alphabet. */
export const DeploymentId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)");
export const ModuleName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "1-64 of A-Z a-z 0-9 . _ -");
export const FileName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "a plain file name: 1-128 of A-Z a-z 0-9 . _ - (no directories)");
export const ExportName = z.string().min(1).max(256);

export const DEPLOYMENT_LIMITS = {
  maxDevices: 100,
  maxModules: 32,
  maxFunctions: 64,
  maxParams: LIMITS.maxArgs,
  maxFiles: 16,
  /** one deployment mount (data file) */
  maxDataFileBytes: 16 * 1024 * 1024,
  /** inline (base64) data files are for small things */
  maxInlineDataBytes: 128 * 1024,
  /** one input file of a call, and the whole multipart body of a call */
  maxInputFileBytes: 8 * 1024 * 1024,
  maxCallBodyBytes: 16 * 1024 * 1024,
  /** one output file a function writes */
  maxOutputFileBytes: 16 * 1024 * 1024,
  /** steps one chain may take (a loop in a manifest ends here) */
  maxChainSteps: 16,
} as const;

export const ParamType = z.enum(["integer", "number", "string", "boolean"]);
export type ParamType = z.infer<typeof ParamType>;

export const Param = z.strictObject({
  name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/),
  type: ParamType,
  required: z.boolean().default(true),
  /** where a call carries it: the query string, or the JSON body (or a form field of a multipart body) */
  in: z.enum(["query", "body"]).default("query"),
});
export type Param = z.output<typeof Param>;

export const FileSpec = z.strictObject({
  name: FileName,
  mediaType: z.string().min(1).max(128).default("application/octet-stream"),
});
export type FileSpec = z.output<typeof FileSpec>;

/** The next step of a chain: a function of this deployment on a device, or (wasmiot) an outside URL. */
export const NextStep = z.union([
  z.strictObject({
    device: DeviceId,
    module: ModuleName,
    function: ExportName,
    /** another deployment's function (wasmiot names the next step by its URL); default: this deployment */
    deployment: DeploymentId.optional(),
    /** wasmiot facade: the next device's facade base URL, so result links point where the orchestrator can follow them */
    resultBase: z.string().max(512).optional(),
  }),
  z.strictObject({
    url: z.url({ protocol: /^https?$/ }),
    method: z.enum(["get", "post"]).default("post"),
    /** the parameter a forwarded primitive goes in (wasmiot: the next endpoint's first parameter) */
    param: z.string().max(64).optional(),
  }),
]);
export type NextStep = z.output<typeof NextStep>;

export const InstanceLifetime = z.enum(["fresh", "deployment"]);
export type InstanceLifetime = z.infer<typeof InstanceLifetime>;

export const FunctionSpec = z.strictObject({
  params: z.array(Param).max(DEPLOYMENT_LIMITS.maxParams).default([]),
  /** execution mounts: files a call uploads (multipart/form-data), placed in the module's directory before the run */
  inputs: z.array(FileSpec).max(DEPLOYMENT_LIMITS.maxFiles).default([]),
  /** the JSON primitive the function returns, or none (its output is files) */
  result: z.enum(["integer", "number", "string", "boolean", "none"]).default("none"),
  /** output mounts: files the function writes, kept per job at stable URLs */
  outputs: z.array(FileSpec).max(DEPLOYMENT_LIMITS.maxFiles).default([]),
  /** fresh: a new instance per call; deployment: one instance per deployment, calls serialized (state carries over) */
  instance: InstanceLifetime.default("fresh"),
  timeoutMs: z.number().int().min(1).max(LIMITS.maxTimeoutMs).default(LIMITS.defaultTimeoutMs),
  to: NextStep.nullable().default(null),
});
export type FunctionSpec = z.output<typeof FunctionSpec>;

/**
 * Where a module goes when the device it is placed on (its home) falls silent: the job failover
 * vocabulary (`onOffline`, `afterMs`: silence since the home's last heartbeat) with the standbys, an
 * ordered list of devices (the first healthy one is taken) or a selector (the least-loaded healthy
 * match). The module returns home once the home is back and its part is active again.
 */
export const DeploymentFailover = z
  .strictObject({
    onOffline: z.literal("move").default("move"),
    afterMs: z.number().int().min(1_000).max(7 * 24 * 3_600_000).default(60_000),
    devices: z.array(DeviceId).min(1).max(16).optional(),
    selector: Selector.optional(),
  })
  .refine((f) => (f.devices === undefined) !== (f.selector === undefined), { message: "give either devices (an ordered failover list) or a selector" })
  .meta({ id: "DeploymentFailover" });
export type DeploymentFailover = z.output<typeof DeploymentFailover>;

/** A data file installed with the deployment (wasmiot's deployment-stage mount). */
export const DataMount = z.union([
  z.strictObject({ name: FileName, url: z.url({ protocol: /^https?$/ }), sha256: Sha256Hex.optional() }),
  z.strictObject({ name: FileName, base64: z.base64().max(Math.ceil((DEPLOYMENT_LIMITS.maxInlineDataBytes * 4) / 3) + 4) }),
]);
export type DataMount = z.output<typeof DataMount>;

export const ModuleSpec = z.strictObject({
  name: ModuleName,
  /** the module's sha256: already uploaded (POST /v1/modules), or fetched from `url` and checked against it */
  digest: Sha256Hex,
  /** bytes; when given, the binary must have exactly this size */
  size: z.number().int().positive().max(LIMITS.maxModuleBytes).optional(),
  url: z.url({ protocol: /^https?$/ }).optional(),
  /** where it goes; may be left out when the manifest has a `selector` (every module then goes to every device it picks) */
  devices: z.array(DeviceId).max(DEPLOYMENT_LIMITS.maxDevices).default([]),
  functions: z.record(ExportName, FunctionSpec).refine((f) => Object.keys(f).length >= 1 && Object.keys(f).length <= DEPLOYMENT_LIMITS.maxFunctions, {
    message: `describe 1-${DEPLOYMENT_LIMITS.maxFunctions} functions`,
  }),
  mounts: z.array(DataMount).max(DEPLOYMENT_LIMITS.maxFiles).default([]),
  /** re-place this module on a standby while the device it is on is offline (each device it is placed on is a home) */
  failover: DeploymentFailover.optional(),
});
export type ModuleSpec = z.output<typeof ModuleSpec>;

export const DeploymentManifest = z
  .strictObject({
    id: DeploymentId,
    modules: z.array(ModuleSpec).min(1).max(DEPLOYMENT_LIMITS.maxModules),
    /** instead of listing devices per module: every device this picks (at deploy time) gets every module; a rollout's target */
    selector: Selector.optional(),
  })
  .superRefine((m, ctx) => {
    for (const [i, mod] of m.modules.entries()) {
      if (!m.selector && mod.devices.length === 0) ctx.addIssue({ code: "custom", path: ["modules", i, "devices"], message: "name at least one device, or give the manifest a selector" });
      if (m.selector && mod.devices.length > 0) ctx.addIssue({ code: "custom", path: ["modules", i, "devices"], message: "with a selector, modules name no devices" });
    }
    const names = m.modules.map((x) => x.name);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) ctx.addIssue({ code: "custom", path: ["modules"], message: `module name ${dup} is used twice` });
  }).meta({ id: "DeploymentManifest" });
export type DeploymentManifest = z.output<typeof DeploymentManifest>;
export type DeploymentManifestInput = z.input<typeof DeploymentManifest>;

/** A data file as the control plane stored it (content-addressed). */
export const StoredFile = z.object({ name: FileName, digest: Sha256Hex, size: z.number().int().nonnegative() });
export type StoredFile = z.infer<typeof StoredFile>;

/** What one device must hold of a deployment: its modules, with data files already stored by the control plane. */
export const DevicePart = z.object({
  deployment: DeploymentId,
  /** bumps on every (re)deploy: a new generation means new sandbox dirs and new instances */
  generation: z.number().int().positive(),
  source: z.enum(["signed", "wasmiot"]),
  /**
   * A generation whose files the agent keeps on disk beside this one (a rollout's previous
   * version, until the rollout commits), so a rollback to it needs no download.
   */
  keep: z.number().int().positive().optional(),
  modules: z.array(
    z.object({
      name: ModuleName,
      digest: Sha256Hex,
      mounts: z.array(StoredFile),
      functions: z.record(ExportName, FunctionSpec),
    }),
  ),
});
export type DevicePart = z.infer<typeof DevicePart>;

export const DeploymentState = z.enum(["pending", "applying", "active", "failed"]);
export type DeploymentState = z.infer<typeof DeploymentState>;

export const DeviceDeploymentStatus = z.object({
  device: DeviceId,
  generation: z.number().int(),
  state: DeploymentState,
  reason: z.string().nullable(),
  updatedAt: z.string(),
});
export type DeviceDeploymentStatus = z.infer<typeof DeviceDeploymentStatus>;

export const FailoverMove = z.object({
  at: z.string(),
  from: DeviceId,
  to: DeviceId,
  /** `failover`: the home fell silent (or a standby did); `return`: the home is back */
  kind: z.enum(["failover", "return"]),
  reason: z.string(),
});
export type FailoverMove = z.infer<typeof FailoverMove>;

export const PlacementFailover = z.object({
  module: ModuleName,
  /** where the manifest placed it */
  home: DeviceId,
  /** where calls go now: the home, or a standby */
  current: DeviceId,
  policy: DeploymentFailover,
  /** when it last moved and why (null: never moved) */
  movedAt: z.string().nullable(),
  reason: z.string().nullable(),
  /** the last decision that did not move it (waiting for the home, no standby healthy), and when it looks again */
  note: z.string().nullable(),
  nextCheckAt: z.string().nullable(),
  /** the last moves, oldest first (at most 20) */
  history: z.array(FailoverMove),
}).meta({ id: "PlacementFailover" });
export type PlacementFailover = z.infer<typeof PlacementFailover>;

export const DeploymentView = z.object({
  id: DeploymentId,
  namespace: z.string(),
  source: z.enum(["signed", "wasmiot"]),
  signedBy: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  /** active when every device is active; failed when any failed; else pending */
  state: DeploymentState,
  devices: z.array(DeviceDeploymentStatus),
  modules: z.array(z.object({ name: ModuleName, digest: Sha256Hex, devices: z.array(DeviceId), functions: z.array(z.string()) })),
  /** each placement with a failover policy: its home, where it is now, and why it moved */
  failover: z.array(PlacementFailover).optional(),
}).meta({ id: "Deployment" });
export type DeploymentView = z.infer<typeof DeploymentView>;

/** What a call's job carries about the deployment it belongs to (also sent to the agent). */
export const CallContext = z.object({
  deployment: DeploymentId,
  generation: z.number().int(),
  module: ModuleName,
  instance: InstanceLifetime,
  inputs: z.array(FileName),
  outputs: z.array(FileSpec),
  /** wasmiot's facade reports the primitive as a string and no primitive for file results */
  result: FunctionSpec.shape.result,
});
export type CallContext = z.infer<typeof CallContext>;

export const CallAccepted = z.object({
  job: JobId,
  device: DeviceId,
  links: z.object({ self: z.string(), result: z.string() }),
});
export type CallAccepted = z.infer<typeof CallAccepted>;

/** Agent side: the deployments a device must hold, and what it reports about them. */
export const DesiredDeployments = z.object({ version: z.number().int(), deployments: z.array(DevicePart) });
export type DesiredDeployments = z.infer<typeof DesiredDeployments>;

export const AppliedReport = z.strictObject({
  states: z
    .array(z.strictObject({ deployment: DeploymentId, generation: z.number().int(), state: z.enum(["active", "failed"]), reason: z.string().max(2000).nullable() }))
    .max(256),
});
export type AppliedReport = z.infer<typeof AppliedReport>;
