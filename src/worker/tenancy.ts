/**
 * Namespaces: a key scoped to one acts only on that namespace's devices and their
 * jobs. Anything outside is answered as if it did not exist (404), so tenants
 * cannot probe each other. A device's namespace never changes, so the Worker
 * caches it and the check costs a hop only the first time.
 */
import { DEFAULT_NAMESPACE } from "../protocol/keys.js";
import type { Ctx } from "./http.js";
import { deviceStub } from "../platform/stubs.js";

const namespaceOf = new Map<string, string>();

/**
 * The caller's namespace, which every call into a Durable Object carries (the
 * object refuses a mismatch); null only for a key that spans all namespaces.
 * A device acts in its own namespace.
 */
export function callerNamespace(c: Ctx): string | null {
  return c.get("principal").namespace;
}

/** A registered device's namespace (null: not registered). */
export async function deviceNamespace(c: Ctx, deviceId: string): Promise<string | null> {
  const cached = namespaceOf.get(deviceId);
  if (cached !== undefined) return cached;
  const found = await deviceStub(c.env, deviceId).namespace();
  if (found === null) return null;
  if (namespaceOf.size > 100_000) namespaceOf.clear();
  namespaceOf.set(deviceId, found);
  return found;
}

export async function canSeeDevice(c: Ctx, deviceId: string): Promise<boolean> {
  const p = c.get("principal");
  if (p.role === "device") return p.deviceId === deviceId;
  if (p.namespace === null) return true;
  return (await deviceNamespace(c, deviceId)) === p.namespace;
}

export const namespaceForNewDevice = (c: Ctx) => callerNamespace(c) ?? DEFAULT_NAMESPACE;
