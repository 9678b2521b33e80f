/**
 * Verifying signed submissions, and deciding when a submission must be signed.
 * Keys and namespace settings are cached per isolate for a few seconds (like API
 * keys): a revoked key or a changed setting takes effect within that time.
 */
import { calculateJwkThumbprint, decodeProtectedHeader, errors, importJWK, jwtVerify, type JWK } from "jose";
import type { z } from "zod";
import { JobSubmission } from "../protocol/job.js";
import { DEFAULT_RETENTION, MAX_SIGNED_LIFETIME_SECONDS, SIGNING_ALGORITHMS, type OrchestratorKeyView, type SigningAlgorithm } from "../protocol/signing.js";
import type { ProblemType } from "../protocol/problem.js";
import { TtlCache } from "../core/ttl-cache.js";
import { registryStub } from "../platform/stubs.js";
import type { Env } from "../platform/env.js";

const CACHE_MS = 5_000;
const keyCache = new TtlCache<string, OrchestratorKeyView | null>(CACHE_MS);
const settingsCache = new TtlCache<string, boolean>(CACHE_MS);

export type Verified = { ok: true; job: JobSubmission; kid: string; keyNamespace: string | null } | { ok: false; problem: ProblemType; detail: string };

/** The algorithm a public JWK signs with, and its kid (its own, or its RFC 7638 thumbprint). */
export async function describePublicJwk(jwk: JWK): Promise<{ alg: SigningAlgorithm; kid: string } | null> {
  const alg: SigningAlgorithm | null = jwk.kty === "OKP" && jwk.crv === "Ed25519" ? "EdDSA" : jwk.kty === "EC" && jwk.crv === "P-256" ? "ES256" : null;
  if (!alg) return null;
  try {
    await importJWK(jwk, alg);
  } catch {
    return null;
  }
  return { alg, kid: jwk.kid ?? (await calculateJwkThumbprint(jwk)) };
}

const orchestratorKey = (env: Env, kid: string) => keyCache.get(kid, () => registryStub(env).orchestratorKey(kid));

const JOSE_REASONS: Record<string, string> = {
  ERR_JWT_EXPIRED: "the token has expired",
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED: "the signature does not match the key",
  ERR_JWT_CLAIM_VALIDATION_FAILED: "a required claim is missing or invalid",
  ERR_JWS_INVALID: "the token is not a valid JWS",
  ERR_JWT_INVALID: "the token is not a valid JWT",
  ERR_JOSE_ALG_NOT_ALLOWED: "the algorithm does not match the key",
};

export type VerifiedClaim<T> = { ok: true; value: T; kid: string; keyNamespace: string | null } | { ok: false; problem: ProblemType; detail: string };

/**
 * Verifies a compact JWT from a registered orchestrator key and parses its
 * `claim` with `schema`: kid known and not revoked, the key's algorithm,
 * exp/iat/jti present, a bounded lifetime, and a (kid, jti) accepted once.
 * The jti is spent only after everything else passed, so a refused token can
 * be corrected and sent again.
 */
export async function verifySignedClaim<S extends z.ZodType>(env: Env, token: string, claim: string, schema: S): Promise<VerifiedClaim<z.output<S>>> {
  const bad = (detail: string): VerifiedClaim<never> => ({ ok: false, problem: "invalid-signature", detail });
  let header;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    return bad("the body is not a compact JWS");
  }
  if (!header.kid) return bad("the protected header names no kid");
  if (!SIGNING_ALGORITHMS.includes(header.alg as SigningAlgorithm)) return bad(`alg must be one of ${SIGNING_ALGORITHMS.join(", ")}`);
  const key = await orchestratorKey(env, header.kid);
  if (!key || key.revokedAt) return bad(`no registered, unrevoked orchestrator key ${header.kid}`);

  let payload;
  try {
    ({ payload } = await jwtVerify(token, await importJWK(key.jwk as JWK, key.alg), {
      algorithms: [key.alg],
      requiredClaims: ["exp", "iat", "jti"],
      clockTolerance: 60,
    }));
  } catch (e) {
    const code = e instanceof errors.JOSEError ? e.code : "";
    return bad(JOSE_REASONS[code] ?? `the token was refused (${code || String(e)})`);
  }
  if (payload.exp! - payload.iat! > MAX_SIGNED_LIFETIME_SECONDS) return bad(`exp - iat may be at most ${MAX_SIGNED_LIFETIME_SECONDS} s`);
  if (payload.iat! > Date.now() / 1000 + 60) return bad("iat is in the future");
  const parsed = schema.safeParse(payload[claim]);
  if (!parsed.success) {
    return { ok: false, problem: "validation", detail: `the ${claim} claim is not valid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}` };
  }
  if (!(await registryStub(env).consumeJti(`${key.kid}:${payload.jti}`, payload.exp! * 1000))) {
    return { ok: false, problem: "replayed", detail: `jti ${payload.jti} was already used with key ${key.kid}` };
  }
  return { ok: true, value: parsed.data, kid: key.kid, keyNamespace: key.namespace };
}

export async function verifySignedJob(env: Env, token: string): Promise<Verified> {
  const v = await verifySignedClaim(env, token, "job", JobSubmission);
  return v.ok ? { ok: true, job: v.value, kid: v.kid, keyNamespace: v.keyNamespace } : v;
}

/** Whether submissions for a device in `namespace` must be signed. */
export async function signingRequired(env: Env, namespace: string): Promise<boolean> {
  if (env.REQUIRE_SIGNED_JOBS === "true") return true;
  return settingsCache.get(namespace, async () => (await registryStub(env).namespaceSettings(namespace)).requireSignedJobs);
}

const keyWindowCache = new TtlCache<string, number>(CACHE_MS);

/** How long an Idempotency-Key of `namespace` is bound to its request (its retention setting; the default for unscoped callers). */
export async function idempotencyWindowMs(env: Env, namespace: string | null): Promise<number> {
  if (namespace === null) return DEFAULT_RETENTION.idempotencySeconds * 1000;
  return keyWindowCache.get(namespace, async () => (await registryStub(env).namespaceSettings(namespace)).retention.idempotencySeconds * 1000);
}

/** A key revoked here is refused at once in this isolate (others within CACHE_MS). */
export function forgetOrchestratorKey(kid: string) {
  keyCache.delete(kid);
}

/** Settings changed here apply at once in this isolate. */
export function forgetNamespaceSettings(namespace: string) {
  settingsCache.delete(namespace);
  keyWindowCache.delete(namespace);
}
