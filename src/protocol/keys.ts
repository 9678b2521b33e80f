import { z } from "zod";

/** admin: everything; user: jobs, modules, devices (read); register: device registration only; metrics: GET /metrics only. */
export const Role = z.enum(["admin", "user", "register", "metrics"]);
export type Role = z.infer<typeof Role>;

/** A tenant: keys scoped to one see only its devices and jobs. */
export const Namespace = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lowercase letters, digits and -, up to 63");
export const DEFAULT_NAMESPACE = "default";

export const KeyCreate = z.strictObject({
  role: Role,
  label: z.string().min(1).max(128).optional(),
  /** omit for a key that spans all namespaces (only an unscoped admin may create one) */
  namespace: Namespace.optional(),
});

export const KeyView = z.object({
  id: z.string(),
  role: Role,
  label: z.string().nullable(),
  namespace: z.string().nullable(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
});
export type KeyView = z.infer<typeof KeyView>;

export const KeyCreated = KeyView.extend({ key: z.string().describe("shown once; only its hash is stored") });
