/**
 * Dashboard sessions: POST /v1/session exchanges an API key (sent once, as a Bearer
 * credential) for a cookie holding a short-lived JWT (HS256, jose) that names the key by
 * id. The browser never keeps the key: the cookie is HttpOnly (no script reads it),
 * SameSite=Strict (no other site's page sends it) and Secure over https.
 *
 * On each request the cookie's key must still be active (a revoked key ends its sessions
 * within KEY_CACHE_MS), and a request that changes something must also carry
 * `X-Wasmvisor-CSRF: 1` (a header a cross-site form cannot send, and a cross-site script
 * cannot send without a CORS preflight this Worker never grants) and, when the browser
 * sends one, an Origin equal to the Worker's own.
 */
import { SignJWT, jwtVerify } from "jose";
import type { Role } from "../protocol/keys.js";
import { timingSafeEqual } from "../core/crypto.js";
import { TtlCache } from "../core/ttl-cache.js";
import { registryStub } from "../platform/stubs.js";
import type { Env } from "../platform/env.js";

export const SESSION_COOKIE = "wasmvisor_session";
export const CSRF_HEADER = "x-wasmvisor-csrf";
/** How long a session lasts; log in again after. */
export const SESSION_TTL_SECONDS = 60 * 60;
const ISSUER = "wasmvisor";
const AUDIENCE = "wasmvisor-dashboard";

export type SessionPrincipal = { role: Role; keyId: string; namespace: string | null; expiresAt: number };

/** The signing key: SESSION_KEY, else one derived from DEVICE_CREDENTIAL_KEY (never the key itself); null: neither is set. */
async function signingKey(env: Env): Promise<Uint8Array | null> {
  if (env.SESSION_KEY && env.SESSION_KEY.length >= 32) return new TextEncoder().encode(env.SESSION_KEY);
  if (!env.DEVICE_CREDENTIAL_KEY || env.DEVICE_CREDENTIAL_KEY.length < 32) return null;
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(env.DEVICE_CREDENTIAL_KEY), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode("wasmvisor dashboard session key v1")));
}

/**
 * What a session of the bootstrap admin token is bound to: a changed ADMIN_TOKEN ends them.
 * An HMAC under the session signing key, so the (readable) claim is no offline oracle for
 * guessing ADMIN_TOKEN.
 */
async function adminFingerprint(env: Env, key: Uint8Array): Promise<string> {
  if (!env.ADMIN_TOKEN) return "";
  const mac = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const sig = new Uint8Array(await crypto.subtle.sign("HMAC", mac, new TextEncoder().encode(`session admin:${env.ADMIN_TOKEN}`)));
  return [...sig.slice(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A new session token for an API key (or the bootstrap admin token); null when no signing key is configured. */
export async function issueSession(env: Env, p: { role: Role; keyId: string; namespace: string | null }, nowMs: number): Promise<{ token: string; expiresAt: number } | null> {
  const key = await signingKey(env);
  if (!key) return null;
  const expiresAt = Math.floor(nowMs / 1000) + SESSION_TTL_SECONDS;
  const claims = p.keyId === "bootstrap" ? { adm: await adminFingerprint(env, key) } : {};
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(p.keyId)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt(Math.floor(nowMs / 1000))
    .setExpirationTime(expiresAt)
    .sign(key);
  return { token, expiresAt: expiresAt * 1000 };
}

const activeKeys = new TtlCache<string, { role: Role; namespace: string | null } | null>(5_000);

/** A key revoked through this isolate ends its sessions here at once (elsewhere within 5 s). */
export function forgetSessionKeys() {
  activeKeys.clear();
}

/** The principal a session cookie stands for, or null (bad signature, expired, key revoked). */
export async function verifySession(env: Env, token: string, opts: { fresh?: boolean } = {}): Promise<SessionPrincipal | null> {
  const key = await signingKey(env);
  if (!key) return null;
  let payload;
  try {
    ({ payload } = await jwtVerify(token, key, { issuer: ISSUER, audience: AUDIENCE, algorithms: ["HS256"] }));
  } catch {
    return null;
  }
  const keyId = payload.sub;
  if (typeof keyId !== "string" || typeof payload.exp !== "number") return null;
  if (keyId === "bootstrap") {
    const bound = typeof payload.adm === "string" ? payload.adm : "";
    const current = await adminFingerprint(env, key);
    return current !== "" && timingSafeEqual(bound, current) ? { role: "admin", keyId, namespace: null, expiresAt: payload.exp * 1000 } : null;
  }
  const active = opts.fresh ? await registryStub(env).activeKey(keyId) : await activeKeys.get(keyId, () => registryStub(env).activeKey(keyId), (k) => k !== null);
  return active ? { ...active, keyId, expiresAt: payload.exp * 1000 } : null;
}

/** The session cookie's value in a Cookie header, if any. */
export function sessionCookie(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === SESSION_COOKIE) return rest.join("=");
  }
  return undefined;
}

export function sessionSetCookie(token: string, maxAgeSeconds: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure ? "; Secure" : ""}`;
}
