import type { DeviceObject } from "../durable/device-object.js";
import type { RegistryObject } from "../durable/registry-object.js";
import type { JobIndexObject } from "../durable/job-index-object.js";
import type { DeploymentObject } from "../durable/deployment-object.js";
import type { DeviceListObject } from "../durable/device-list-object.js";
import { DEFAULT_LEASE_SETTINGS, type LeaseSettings } from "../core/timing.js";

export interface Env {
  DEVICES: DurableObjectNamespace<DeviceObject>;
  REGISTRY: DurableObjectNamespace<RegistryObject>;
  JOB_INDEX: DurableObjectNamespace<JobIndexObject>;
  DEPLOYMENTS: DurableObjectNamespace<DeploymentObject>;
  /** the device listing's shards (see src/core/device-listing.ts) */
  DEVICE_LIST: DurableObjectNamespace<DeviceListObject>;
  MODULES: R2Bucket;
  /** bootstrap admin credential (a Worker secret; .dev.vars locally) */
  ADMIN_TOKEN?: string;
  /** the key device credentials are MACed with (a Worker secret of 32+ characters; .dev.vars locally); unset, devices cannot register or authenticate */
  DEVICE_CREDENTIAL_KEY?: string;
  HEARTBEAT_TIMEOUT_MS?: string;
  ACK_TIMEOUT_MS?: string;
  LEASE_GRACE_MS?: string;
  RETRY_BASE_MS?: string;
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
}

const num = (v: string | undefined, fallback: number) => {
  const n = Number(v);
  return v !== undefined && Number.isFinite(n) && n > 0 ? n : fallback;
};

export interface Settings extends LeaseSettings {
  heartbeatTimeoutMs: number;
  retryBaseMs: number;
  deviceListShards: number;
}

export function settingsFrom(env: Env): Settings {
  return {
    heartbeatTimeoutMs: num(env.HEARTBEAT_TIMEOUT_MS, 30_000),
    ackTimeoutMs: num(env.ACK_TIMEOUT_MS, DEFAULT_LEASE_SETTINGS.ackTimeoutMs),
    graceMs: num(env.LEASE_GRACE_MS, DEFAULT_LEASE_SETTINGS.graceMs),
    retryBaseMs: num(env.RETRY_BASE_MS, 1_000),
    deviceListShards: Math.min(256, Math.floor(num(env.DEVICE_LIST_SHARDS, 4))),
  };
}
