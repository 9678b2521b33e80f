/** The tunables the Worker's variables set (timers, shard counts), read once with their defaults. */
import type { Env } from "./env.js";
import { DEFAULT_LEASE_SETTINGS, type LeaseSettings } from "../core/timing.js";

const num = (v: string | undefined, fallback: number) => {
  const n = Number(v);
  return v !== undefined && Number.isFinite(n) && n > 0 ? n : fallback;
};

export interface Settings extends LeaseSettings {
  heartbeatTimeoutMs: number;
  retryBaseMs: number;
  deviceListShards: number;
  /** how long a command to an agent is good for before it must not be applied (bounded commands) */
  commandTtlMs: number;
}

export function settingsFrom(env: Env): Settings {
  return {
    heartbeatTimeoutMs: num(env.HEARTBEAT_TIMEOUT_MS, 30_000),
    ackTimeoutMs: num(env.ACK_TIMEOUT_MS, DEFAULT_LEASE_SETTINGS.ackTimeoutMs),
    graceMs: num(env.LEASE_GRACE_MS, DEFAULT_LEASE_SETTINGS.graceMs),
    retryBaseMs: num(env.RETRY_BASE_MS, 1_000),
    commandTtlMs: num(env.COMMAND_TTL_MS, 30_000),
    deviceListShards: Math.min(256, Math.floor(num(env.DEVICE_LIST_SHARDS, 4))),
  };
}

/** How many shards the job index has (INDEX_SHARDS; see docs/scale.md). */
export function indexShardCount(env: Env): number {
  const n = Number(env.INDEX_SHARDS);
  return Number.isInteger(n) && n >= 1 && n <= 1024 ? n : 4;
}

/** How many relays each namespace's events go through to its hub (EVENT_RELAYS; docs/scale.md, "Events"). */
export function eventRelayCount(env: Env): number {
  const n = Number(env.EVENT_RELAYS);
  return Number.isInteger(n) && n >= 1 && n <= 1024 ? n : 4;
}
