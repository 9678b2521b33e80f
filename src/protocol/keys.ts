import { z } from "zod";

/** admin: everything; user: jobs, modules, devices (read); register: device registration only. */
export const Role = z.enum(["admin", "user", "register"]);
export type Role = z.infer<typeof Role>;

export const KeyCreate = z.strictObject({
  role: Role,
  label: z.string().min(1).max(128).optional(),
});

export const KeyView = z.object({
  id: z.string(),
  role: Role,
  label: z.string().nullable(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
});
export type KeyView = z.infer<typeof KeyView>;

export const KeyCreated = KeyView.extend({ key: z.string().describe("shown once; only its hash is stored") });
