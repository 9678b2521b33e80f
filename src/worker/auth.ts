/**
 * Who is calling, and may they. Every route declares the roles it admits
 * (src/worker/route.ts makes that a required field); nothing is anonymous
 * but liveness. The caller is identified before anything else of the request
 * is looked at (body limits, body parsing): `authenticate` runs first for the
 * API, `allow` then checks the role.
 *
 * A device credential carries a MAC under DEVICE_CREDENTIAL_KEY, so a made-up
 * one is refused here without any lookup (no Durable Object is addressed for
 * it); one that passes is then confirmed by the device's own object, which
 * holds the credential's hash (a rotated credential stops there).
 */
import type { MiddlewareHandler } from "hono";
import { parseCredential, type DeviceId } from "../protocol/ids.js";
import type { Role } from "../protocol/keys.js";
import { timingSafeEqual } from "../core/crypto.js";
import { deviceCredentialKey, verifyDeviceCredentialMac } from "../core/device-credential.js";
import { TtlCache } from "../core/ttl-cache.js";
import { log, problem, traceFields, type AppEnv, type Ctx } from "./http.js";
import { registryStub, deviceStub } from "../platform/stubs.js";
import { CSRF_HEADER, sessionCookie, verifySession } from "./session.js";

export type CallerRole = Role | "device";

/** `namespace` null: the key spans all namespaces. A device acts in its own namespace. */
export type Principal =
  | { role: Role; keyId: string; namespace: string | null; session?: { expiresAt: number; id: string } }
  | { role: "device"; deviceId: DeviceId; secret: string; namespace: string };

/** Positive checks are cached briefly per isolate: a revoked key or rotated device credential stops working within this time. */
export const KEY_CACHE_MS = 5_000;
const keyCache = new TtlCache<string, { role: Role; namespace: string | null } | null>(KEY_CACHE_MS);
/** credential -> the device's namespace, for credentials the device's object confirmed */
const deviceCache = new TtlCache<string, string | null>(KEY_CACHE_MS);

/** A device credential rotated through this isolate is refused here at once (elsewhere within KEY_CACHE_MS). */
export function forgetDeviceCredentials() {
  deviceCache.clear();
}

/** An API key revoked through this isolate is refused here at once (elsewhere within KEY_CACHE_MS). */
export function forgetApiKeys() {
  keyCache.clear();
}

/** Why a credential was not accepted: not ours, or (device credentials) this control plane cannot check it. */
type Refusal = "invalid" | "device-key-missing";

async function identify(token: string, env: AppEnv["Bindings"]): Promise<Principal | Refusal> {
  if (env.ADMIN_TOKEN && env.ADMIN_TOKEN.length >= 16 && timingSafeEqual(token, env.ADMIN_TOKEN)) return { role: "admin", keyId: "bootstrap", namespace: null };
  const parsed = parseCredential(token);
  if (!parsed) return "invalid";
  if (parsed.kind === "device") {
    const key = deviceCredentialKey(env.DEVICE_CREDENTIAL_KEY);
    if (!key) return "device-key-missing";
    if (!(await verifyDeviceCredentialMac(await key, parsed.deviceId, parsed.secret, parsed.mac))) return "invalid";
    const namespace = await deviceCache.get(token, () => deviceStub(env, parsed.deviceId).credentialNamespace(parsed.secret), (ns) => ns !== null);
    return namespace === null ? "invalid" : { role: "device", deviceId: parsed.deviceId, secret: parsed.secret, namespace };
  }
  // Only valid keys are remembered: a refused one is asked again each time.
  const key = await keyCache.get(token, () => registryStub(env).verifyKey(parsed.keyId, parsed.secret), (k) => k !== null);
  return key ? { ...key, keyId: parsed.keyId } : "invalid";
}

/** Identifies the caller once per request; answers the refusal to send, or null when the caller is known (or sent nothing). */
async function identifyCaller(c: Ctx): Promise<Response | null> {
  if (c.get("principal")) return null;
  const header = c.req.header("authorization");
  if (header === undefined) return identifySession(c);
  const token = header.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!token) return problem(c, "unauthenticated", "send Authorization: Bearer <credential>");
  const identified = await identify(token, c.env);
  if (identified === "device-key-missing") {
    // Not the device's fault: agents must keep retrying, not give up on their credential (they do on a 401).
    log("error", "a device credential arrived but DEVICE_CREDENTIAL_KEY is not set (or shorter than 32 characters)", { requestId: c.get("requestId"), ...traceFields(c) });
    return problem(c, "not-configured", "device credentials cannot be checked: the control plane's DEVICE_CREDENTIAL_KEY is not set");
  }
  if (identified === "invalid") return problem(c, "unauthenticated", "the credential is not valid");
  c.set("principal", identified);
  return null;
}

/**
 * The dashboard's session cookie (session.ts), used only when no Authorization header is
 * sent: a bad or expired one is a 401; a request that changes something must carry the
 * CSRF header and, if the browser sent an Origin, come from this origin.
 */
async function identifySession(c: Ctx): Promise<Response | null> {
  const token = sessionCookie(c.req.header("cookie"), c.req.url);
  if (token === undefined) return null;
  const session = await verifySession(c.env, token);
  if (!session) return problem(c, "unauthenticated", "the session has expired, was logged out, or its key was revoked: log in again");
  if (!["GET", "HEAD"].includes(c.req.method)) {
    if (c.req.header(CSRF_HEADER) !== "1") return problem(c, "forbidden", `a request made with the session cookie that changes something must send ${CSRF_HEADER}: 1`);
    const origin = c.req.header("origin");
    if (origin !== undefined && origin !== new URL(c.req.url).origin) return problem(c, "forbidden", "the session cookie is not accepted from another origin");
  }
  c.set("principal", { role: session.role, keyId: session.keyId, namespace: session.namespace, session: { expiresAt: session.expiresAt, id: session.sessionId } });
  return null;
}

/**
 * Whether the credential this request came with is still good, asked afresh (no cache):
 * long-lived answers (event streams, log follows) call this now and then and end when it
 * is not (stream-guard.ts).
 */
export async function credentialStillValid(c: Ctx): Promise<boolean> {
  const header = c.req.header("authorization");
  if (header === undefined) {
    const token = sessionCookie(c.req.header("cookie"), c.req.url);
    return token !== undefined && (await verifySession(c.env, token)) !== null;
  }
  const token = header.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!token) return false;
  if (c.env.ADMIN_TOKEN && c.env.ADMIN_TOKEN.length >= 16 && timingSafeEqual(token, c.env.ADMIN_TOKEN)) return true;
  const parsed = parseCredential(token);
  if (!parsed) return false;
  if (parsed.kind === "device") return (await deviceStub(c.env, parsed.deviceId).credentialNamespace(parsed.secret)) !== null;
  return (await registryStub(c.env).verifyKey(parsed.keyId, parsed.secret)) !== null;
}

/** First of the API's middleware: a bad credential is refused before the body is looked at. */
export function authenticate(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const refused = await identifyCaller(c);
    if (refused) return refused;
    if (!c.get("principal")) return problem(c, "unauthenticated", "send Authorization: Bearer <credential> (or log in: POST /v1/session)");
    await next();
  };
}

export function allow(roles: readonly CallerRole[]): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const refused = await identifyCaller(c);
    if (refused) return refused;
    const principal = c.get("principal");
    if (!principal) return problem(c, "unauthenticated", "send Authorization: Bearer <credential>");
    if (!roles.includes(principal.role)) {
      return problem(c, "forbidden", `a ${principal.role} credential may not call this route (allowed: ${roles.join(", ")})`);
    }
    await next();
  };
}

export function devicePrincipal(p: Principal): Extract<Principal, { role: "device" }> | null {
  return p.role === "device" ? p : null;
}
