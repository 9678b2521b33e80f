/**
 * Who is calling, and may they. Every route declares the roles it admits
 * (src/worker/route.ts makes that a required field); nothing is anonymous
 * but liveness. Device credentials are checked by the device's own object,
 * which holds their hash, so an agent request costs no extra hop.
 */
import type { MiddlewareHandler } from "hono";
import { parseCredential, type DeviceId } from "../protocol/ids.js";
import type { Role } from "../protocol/keys.js";
import { timingSafeEqual } from "../core/crypto.js";
import { TtlCache } from "../core/ttl-cache.js";
import { registryStub } from "../durable/registry-object.js";
import { problem, type AppEnv } from "./http.js";

export type CallerRole = Role | "device";

/** `namespace` null: the key spans all namespaces. */
export type Principal =
  | { role: Role; keyId: string; namespace: string | null }
  | { role: "device"; deviceId: DeviceId; secret: string };

/** Positive key checks are cached briefly per isolate: a revoked key stops working within this time. */
export const KEY_CACHE_MS = 5_000;
const keyCache = new TtlCache<string, { role: Role; namespace: string | null } | null>(KEY_CACHE_MS);

async function identify(token: string, env: AppEnv["Bindings"]): Promise<Principal | null> {
  if (env.ADMIN_TOKEN && env.ADMIN_TOKEN.length >= 16 && timingSafeEqual(token, env.ADMIN_TOKEN)) return { role: "admin", keyId: "bootstrap", namespace: null };
  const parsed = parseCredential(token);
  if (!parsed) return null;
  if (parsed.kind === "device") return { role: "device", deviceId: parsed.deviceId, secret: parsed.secret };
  // Only valid keys are remembered: a refused one is asked again each time.
  const key = await keyCache.get(token, () => registryStub(env).verifyKey(parsed.keyId, parsed.secret), (k) => k !== null);
  return key ? { ...key, keyId: parsed.keyId } : null;
}

export function allow(roles: readonly CallerRole[]): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const header = c.req.header("authorization");
    const token = header?.match(/^Bearer\s+(\S+)$/i)?.[1];
    if (!token) return problem(c, "unauthenticated", "send Authorization: Bearer <credential>");
    const principal = await identify(token, c.env);
    if (!principal) return problem(c, "unauthenticated", "the credential is not valid");
    if (!roles.includes(principal.role)) {
      return problem(c, "forbidden", `a ${principal.role} credential may not call this route (allowed: ${roles.join(", ")})`);
    }
    c.set("principal", principal);
    await next();
  };
}

export function devicePrincipal(p: Principal): Extract<Principal, { role: "device" }> | null {
  return p.role === "device" ? p : null;
}
