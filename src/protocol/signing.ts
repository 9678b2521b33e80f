/**
 * Signed submissions: orchestrators sign with EdDSA (Ed25519) or ES256 keys
 * registered here by an admin. A signed job is a compact JWT whose `job` claim is
 * the submission; `exp`, `iat` and `jti` are required and a `jti` is accepted once.
 */
import { z } from "zod";
import { Namespace } from "./keys.js";

export const SIGNING_ALGORITHMS = ["EdDSA", "ES256"] as const;
export const SigningAlgorithm = z.enum(SIGNING_ALGORITHMS);
export type SigningAlgorithm = z.infer<typeof SigningAlgorithm>;
/** exp - iat may not exceed this: it bounds how long a jti must be remembered. */
export const MAX_SIGNED_LIFETIME_SECONDS = 3600;

export const PublicJwk = z
  .object({
    kty: z.enum(["OKP", "EC"]),
    crv: z.enum(["Ed25519", "P-256"]),
    x: z.string().max(200),
    y: z.string().max(200).optional(),
    kid: z.string().min(1).max(200).optional(),
  })
  .loose()
  .refine((jwk) => !("d" in jwk), "that is a private key: register the public key only");

export const OrchestratorKeyCreate = z.strictObject({
  jwk: PublicJwk,
  label: z.string().min(1).max(128).optional(),
  /** a key scoped to a namespace signs only for that namespace's devices */
  namespace: Namespace.optional(),
});

export const OrchestratorKeyView = z.object({
  kid: z.string(),
  alg: SigningAlgorithm,
  /** the public key's fields (kty, crv, x, y): nothing else is kept */
  jwk: z.record(z.string(), z.string()),
  namespace: z.string().nullable(),
  label: z.string().nullable(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
});
export type OrchestratorKeyView = z.infer<typeof OrchestratorKeyView>;

/**
 * How long a namespace keeps what its jobs leave behind (docs/retention.md). An ended job
 * goes with its logs, result, files and index row; an Idempotency-Key is forgotten after
 * its window (a repeat after that is a new request).
 */
export const DEFAULT_RETENTION = { endedJobsSeconds: 7 * 24 * 3600, idempotencySeconds: 24 * 3600 } as const;
export const Retention = z.strictObject({
  endedJobsSeconds: z.number().int().min(60).max(10 * 365 * 24 * 3600)
    .describe(`how long an ended job (and its logs, result, files, index row) is kept after it ended; default ${DEFAULT_RETENTION.endedJobsSeconds} (7 days)`),
  idempotencySeconds: z.number().int().min(60).max(30 * 24 * 3600)
    .describe(`how long an Idempotency-Key answers its first request; default ${DEFAULT_RETENTION.idempotencySeconds} (24 h)`),
});
export type Retention = z.infer<typeof Retention>;

/** What PUT takes: settings omitted from `retention` get their defaults. */
export const NamespaceSettingsInput = z.strictObject({
  requireSignedJobs: z.boolean(),
  retention: Retention.partial().optional(),
});
export const NamespaceSettings = z.strictObject({ requireSignedJobs: z.boolean(), retention: Retention });
export type NamespaceSettings = z.infer<typeof NamespaceSettings>;

export const withRetentionDefaults = (r: Partial<Retention> | undefined): Retention => ({ ...DEFAULT_RETENTION, ...r });
