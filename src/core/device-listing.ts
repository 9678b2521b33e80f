/**
 * The device listing (GET /v1/devices), sharded: each namespace's devices are spread by a
 * hash of the device id over a fixed number of shard objects, each holding one summary row
 * per device. A page is the merge of every shard's page in (registeredAt, id) order, and
 * the cursor is a position in that order (namespace, registeredAt, id), so it stays correct
 * whichever shard the next rows come from. Pure: the objects and routes do the I/O.
 */
import type { DeviceStatus } from "../protocol/device.js";
import { mergePages, shardOf } from "./shards.js";

/** What a device object publishes; JSON columns stay strings to keep RPC types flat. */
export interface DeviceSummary {
  id: string;
  namespace: string;
  name: string | null;
  status: DeviceStatus;
  description: string;
  health: string | null;
  healthAt: number | null;
  lastSeen: number | null;
  registeredAt: number;
}

/** A place in the listing's order: global listings go namespace by namespace. */
export interface ListingPosition {
  namespace: string;
  registeredAt: number;
  id: string;
}

/** Which of `shards` shards of its namespace holds a device's row. */
export const listingShard = (deviceId: string, shards: number) => shardOf(deviceId, shards);

/** The name of a shard's object. */
export const listingShardName = (namespace: string, shard: number) => `devices/${namespace}/${shard}`;

const byPosition = (a: DeviceSummary, b: DeviceSummary) =>
  a.registeredAt - b.registeredAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * Merges shard pages of one namespace (each sorted, each after the same position) into
 * the first `limit` rows; `more` says whether any shard had rows past them.
 */
export function mergeShardPages(pages: DeviceSummary[][], limit: number): { rows: DeviceSummary[]; more: boolean } {
  return mergePages(pages, byPosition, limit);
}

const b64url = (s: string) => btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

export function encodeListingCursor(p: ListingPosition): string {
  return b64url(JSON.stringify([p.namespace, p.registeredAt, p.id]));
}

/** The position a cursor names, or null for anything this API did not hand out. */
export function decodeListingCursor(s: string): ListingPosition | null {
  try {
    const v: unknown = JSON.parse(atob(s.replace(/-/g, "+").replace(/_/g, "/")));
    if (!Array.isArray(v) || v.length !== 3) return null;
    const [namespace, registeredAt, id] = v as unknown[];
    if (typeof namespace !== "string" || typeof id !== "string" || !Number.isSafeInteger(registeredAt)) return null;
    return { namespace, registeredAt: registeredAt as number, id };
  } catch {
    return null;
  }
}

/** What a device's listing row is made of, besides health: a change to it is published at once. */
export function listingFingerprint(shardName: string, s: Pick<DeviceSummary, "name" | "status" | "description">): string {
  return JSON.stringify([shardName, s.name, s.status, s.description]);
}
