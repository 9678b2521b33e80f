/**
 * Where each kind of Durable Object lives: the one place that turns a name into an
 * object's stub, so the Worker and the objects address each other the same way.
 */
import type { Env } from "./env.js";
import { eventRelayCount, indexShardCount } from "./settings.js";
import { listingShardName } from "../core/device-listing.js";
import { shardOf } from "../core/shards.js";
import { counted } from "./usage.js";

/** A device's object, named by its id: job ids carry the device id, so no lookup is needed. */
export const deviceStub = (env: Env, deviceId: string) => counted(env.DEVICES.get(env.DEVICES.idFromName(deviceId)));

/** One shard of a namespace's device listing. */
export const deviceListStub = (env: Env, namespace: string, shard: number) => counted(env.DEVICE_LIST.get(env.DEVICE_LIST.idFromName(listingShardName(namespace, shard))));

/** The one registry: keys, namespaces, devices' credentials, deployments' names. */
export function registryStub(env: Env) {
  return counted(env.REGISTRY.get(env.REGISTRY.idFromName("global")));
}

/** A deployment's object, named by its namespace and id. */
export function deploymentStub(env: Env, namespace: string, id: string) {
  return counted(env.DEPLOYMENTS.get(env.DEPLOYMENTS.idFromName(`${namespace}/${id}`)));
}

/** A rollout's object, named by its namespace and id. */
export function rolloutStub(env: Env, namespace: string, id: string) {
  return counted(env.ROLLOUTS.get(env.ROLLOUTS.idFromName(`${namespace}/${id}`)));
}

/** Shard names include the count, so a changed INDEX_SHARDS never mixes two placements in one object. */
const shardName = (shard: number, of: number) => `jobs/${shard}/${of}`;

/** The name of the index shard that holds (and is fed) every job of `deviceId`. */
export function jobIndexShardName(env: Env, deviceId: string): string {
  const of = indexShardCount(env);
  return shardName(shardOf(deviceId, of), of);
}

/** The index shard that holds (and is fed) every job of `deviceId`. */
export function jobIndexStub(env: Env, deviceId: string) {
  return counted(env.JOB_INDEX.get(env.JOB_INDEX.idFromName(jobIndexShardName(env, deviceId))));
}

/** Every shard, for listings that span devices. */
export function jobIndexShards(env: Env) {
  const of = indexShardCount(env);
  return Array.from({ length: of }, (_, i) => counted(env.JOB_INDEX.get(env.JOB_INDEX.idFromName(shardName(i, of)))));
}

/** The hub of a namespace's event stream (events-object.ts): numbers, keeps and streams its events. */
export const eventHubStub = (env: Env, namespace: string) => counted(env.EVENTS.get(env.EVENTS.idFromName(`events/${namespace}`)));

/** The relay a device's events go through on their way to the hub (EVENT_RELAYS of them per namespace). */
export function eventRelayStub(env: Env, namespace: string, deviceId: string) {
  const of = eventRelayCount(env);
  return counted(env.EVENTS.get(env.EVENTS.idFromName(`events/${namespace}/relay/${shardOf(deviceId, of)}/${of}`)));
}
/** A namespace's audit log ("*": actions of keys that span all namespaces). */
export const auditStub = (env: Env, namespace: string) => counted(env.AUDIT.get(env.AUDIT.idFromName(`audit/${namespace}`)));
