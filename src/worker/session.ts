/**
 * Dashboard sessions: POST /v1/session exchanges an API key (sent once, as a Bearer
 * credential) for a cookie holding a short-lived JWT (HS256, jose) that names the key by
 * id and carries a session id (`jti`). The browser never keeps the key: the cookie is
 * HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), and, over
 * https and on loopback hosts, `__Host-`-prefixed and Secure (docs/security.md).
 *
 * On each request the session is checked afresh against the registry, in one RPC: its key
 * must still be active and its id must not be on the revocation list (logout puts it there,
 * until the token would have expired anyway). A request that changes something must also
 * carry `X-Wasmvisor-CSRF: 1` (a header a cross-site form cannot send, and a cross-site
 * script cannot send without a CORS preflight this Worker never grants) and, when the
 * browser sends one, an Origin equal to the Worker's own.
 */
import { SignJWT, jwtVerify } from "jose";
import type { Role } from "../protocol/keys.js";
import { timingSafeEqual } from "../core/crypto.js";
import { registryStub } from "../platform/stubs.js";
import type { Env } from "../platform/env.js";

/** The cookie's name over https and on loopback hosts (Secure, Path=/, no Domain: the browser enforces all three for the prefix). */
export const SESSION_COOKIE = "__Host-wasmvisor_session";
/** Its name over plain http to another host, where browsers drop Secure cookies (a LAN without TLS: docs/security.md). */
export const SESSION_COOKIE_PLAIN = "wasmvisor_session";
export const CSRF_HEADER = "x-wasmvisor-csrf";
/** How long a session lasts; log in again after. */
export const SESSION_TTL_SECONDS = 60 * 60;
const ISSUER = "wasmvisor";
const AUDIENCE = "wasmvisor-dashboard";

export type SessionPrincipal = { role: Role; keyId: string; namespace: string | null; expiresAt: number; sessionId: string };

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
    .setJti(crypto.randomUUID())
    .setExpirationTime(expiresAt)
    .sign(key);
  return { token, expiresAt: expiresAt * 1000 };
}

/** A session token whose signature, issuer, audience and expiry hold (nothing else checked): its claims. */
async function readToken(env: Env, token: string): Promise<{ key: Uint8Array; keyId: string; sessionId: string; exp: number; adm: string } | null> {
  const key = await signingKey(env);
  if (!key) return null;
  let payload;
  try {
    ({ payload } = await jwtVerify(token, key, { issuer: ISSUER, audience: AUDIENCE, algorithms: ["HS256"] }));
  } catch {
    return null;
  }
  // A token without a session id (issued before revocation existed) could never be revoked: refused.
  if (typeof payload.sub !== "string" || typeof payload.exp !== "number" || typeof payload.jti !== "string" || payload.jti.length < 16) return null;
  return { key, keyId: payload.sub, sessionId: payload.jti, exp: payload.exp, adm: typeof payload.adm === "string" ? payload.adm : "" };
}

/**
 * The principal a session cookie stands for, or null (bad signature, expired, logged out, key
 * revoked, ADMIN_TOKEN changed). One registry RPC, never cached: a logout or a key revocation
 * anywhere holds on the next request everywhere.
 */
export async function verifySession(env: Env, token: string): Promise<SessionPrincipal | null> {
  const t = await readToken(env, token);
  if (!t) return null;
  const expiresAt = t.exp * 1000;
  if (t.keyId === "bootstrap") {
    const current = await adminFingerprint(env, t.key);
    if (current === "" || !timingSafeEqual(t.adm, current)) return null;
    const state = await registryStub(env).sessionState(null, t.sessionId);
    return state.revoked ? null : { role: "admin", keyId: t.keyId, namespace: null, expiresAt, sessionId: t.sessionId };
  }
  const state = await registryStub(env).sessionState(t.keyId, t.sessionId);
  return !state.revoked && state.key ? { ...state.key, keyId: t.keyId, expiresAt, sessionId: t.sessionId } : null;
}

/** Logout: the session's id goes on the revocation list until the token would have expired. */
export async function revokeSession(env: Env, sessionId: string, expiresAt: number): Promise<void> {
  await registryStub(env).revokeSession(sessionId, expiresAt);
  endSessionStreams(sessionId, expiresAt);
}

/**
 * Sessions logged out through this isolate, until their tokens would have expired: a stream
 * of one notices at its next look (every second, from its own request: a stream must not be
 * ended from the logout's request, since workerd refuses I/O on behalf of another request
 * and the stream's upstream then never closes). Elsewhere: at the stream's next recheck.
 */
const loggedOutHere = new Map<string, number>();

function endSessionStreams(sessionId: string, expiresAt: number) {
  const now = Date.now();
  for (const [id, until] of loggedOutHere) if (until < now) loggedOutHere.delete(id);
  loggedOutHere.set(sessionId, expiresAt);
}

/** Whether this session was logged out through this isolate. */
export function sessionLoggedOutHere(sessionId: string): boolean {
  return loggedOutHere.has(sessionId);
}

/** Whether the request reached us over a channel where browsers keep Secure cookies: https, or a loopback host. */
export function secureChannel(url: string): boolean {
  const u = new URL(url);
  if (u.protocol === "https:") return true;
  const host = u.hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host.endsWith(".localhost") || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The session cookie's value in a Cookie header, if any. The `__Host-` cookie always counts;
 * the unprefixed one only over plain http to a non-loopback host (where the prefixed one
 * cannot exist): over https a cookie without the prefix may have been planted by a sibling
 * domain or a plain-http page, and is ignored.
 */
export function sessionCookie(header: string | undefined, url: string): string | undefined {
  if (!header) return undefined;
  const accepted = secureChannel(url) ? [SESSION_COOKIE] : [SESSION_COOKIE, SESSION_COOKIE_PLAIN];
  let found: string | undefined;
  for (const part of header.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === SESSION_COOKIE) return rest.join("=");
    if (name !== undefined && accepted.includes(name)) found ??= rest.join("=");
  }
  return found;
}

/** The Set-Cookie for a session (`token` "" and 0 s: clears it), named and flagged for the channel the request came over. */
export function sessionSetCookie(token: string, maxAgeSeconds: number, url: string): string {
  const attrs = `Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}`;
  return secureChannel(url) ? `${SESSION_COOKIE}=${token}; ${attrs}; Secure` : `${SESSION_COOKIE_PLAIN}=${token}; ${attrs}`;
}
