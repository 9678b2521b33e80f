import type { Env } from "./env.js";
import { listingShardName } from "../core/device-listing.js";

/** A device's object, named by its id: job ids carry the device id, so no lookup is needed. */
export const deviceStub = (env: Env, deviceId: string) => env.DEVICES.get(env.DEVICES.idFromName(deviceId));

/** One shard of a namespace's device listing. */
export const deviceListStub = (env: Env, namespace: string, shard: number) => env.DEVICE_LIST.get(env.DEVICE_LIST.idFromName(listingShardName(namespace, shard)));
