/**
 * The Worker's bindings (wrangler.toml) as one type, shared by the Worker and the objects.
 *
 * This layer sits below both, so it cannot name the Durable Object classes: each class
 * registers itself under its binding by augmenting `DurableObjectClasses` next to its
 * declaration (declaration merging, as Hono's ContextVariableMap), and the namespaces
 * below are typed from that registry.
 */

/** Binding name -> the Durable Object class behind it; filled in by src/durable. */
export interface DurableObjectClasses {}

type Namespace<K extends string> = K extends keyof DurableObjectClasses ? DurableObjectNamespace<DurableObjectClasses[K]> : never;

export interface Env {
  DEVICES: Namespace<"DEVICES">;
  REGISTRY: Namespace<"REGISTRY">;
  JOB_INDEX: Namespace<"JOB_INDEX">;
  DEPLOYMENTS: Namespace<"DEPLOYMENTS">;
  /** the device listing's shards (see src/core/device-listing.ts) */
  DEVICE_LIST: Namespace<"DEVICE_LIST">;
  EVENTS: Namespace<"EVENTS">;
  /** each namespace's audit log (docs/observability.md) */
  AUDIT: Namespace<"AUDIT">;
  /** staged rollouts, one object per rollout (src/durable/rollout-object.ts) */
  ROLLOUTS: Namespace<"ROLLOUTS">;
  MODULES: R2Bucket;
  /** bootstrap admin credential (a Worker secret; .dev.vars locally) */
  ADMIN_TOKEN?: string;
  /** the key device credentials are MACed with (a Worker secret of 32+ characters; .dev.vars locally); unset, devices cannot register or authenticate */
  DEVICE_CREDENTIAL_KEY?: string;
  HEARTBEAT_TIMEOUT_MS?: string;
  ACK_TIMEOUT_MS?: string;
  LEASE_GRACE_MS?: string;
  RETRY_BASE_MS?: string;
  /** how long a command to an agent is good for (bounded commands; default 30 s) */
  COMMAND_TTL_MS?: string;
  /** "true": every job submission must be signed by a registered orchestrator key */
  REQUIRE_SIGNED_JOBS?: string;
  /** the wasmiot facade's domain: devices answer at <label>.<domain>; unset, the facade is off */
  WASMIOT_FACADE_DOMAIN?: string;
  /** "allow": chains may forward to wasmiot URLs outside this control plane */
  WASMIOT_EXTERNAL_FORWARDING?: string;
  /** shards of each namespace's device listing (default 4); set once: changing it re-homes rows as devices next publish */
  DEVICE_LIST_SHARDS?: string;
  /** debug | info (default) | warn | error */
  LOG_LEVEL?: string;
  /** how many objects the job index is sharded into, by a hash of the device id (default 4; docs/scale.md) */
  INDEX_SHARDS?: string;
  /** relays between device objects and each namespace's event hub (default 4; 64 at 100,000 devices, docs/scale.md) */
  EVENT_RELAYS?: string;
  /** How often an open event stream or log follow re-checks its credential (ms; default 30000). */
  STREAM_RECHECK_MS?: string;
  /** The longest an event stream or log follow opened with an API key stays open (ms; default 600000). */
  STREAM_MAX_MS?: string;
  /** signs dashboard session cookies (>= 32 characters); unset, a key derived from DEVICE_CREDENTIAL_KEY is used */
  SESSION_KEY?: string;
  /** how many days audit entries are kept (default 90) */
  AUDIT_RETENTION_DAYS?: string;
}
