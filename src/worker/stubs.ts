import type { Env } from "./env.js";

/** A device's object, named by its id: job ids carry the device id, so no lookup is needed. */
export const deviceStub = (env: Env, deviceId: string) => env.DEVICES.get(env.DEVICES.idFromName(deviceId));
