import { z } from "zod";

/** One audited action: a mutating API request, or a command the control plane sent a device. */
export const AuditEntry = z.object({
  /** position in the namespace's audit log (newest is largest); the page cursor */
  seq: z.number().int(),
  time: z.string().describe("when the outcome was decided (ISO 8601)"),
  namespace: z.string().describe('the acting credential\'s namespace ("*" for a key spanning all namespaces)'),
  kind: z.enum(["request", "command"]),
  /** key id (API keys; "bootstrap" for ADMIN_TOKEN) or device id */
  actor: z.string(),
  role: z.string(),
  /** operationId of the route (request), or the command's name (command) */
  operation: z.string(),
  /** what it acted on: a job, device, key, deployment id, or the path */
  target: z.string(),
  method: z.string().nullable(),
  path: z.string().nullable(),
  /** the HTTP status answered (request); 0 for a command sent */
  outcome: z.number().int(),
  traceId: z.string().nullable(),
  requestId: z.string().nullable(),
}).meta({ id: "AuditEntry" });
export type AuditEntry = z.infer<typeof AuditEntry>;

/** What is appended: the log assigns seq. */
export type AuditRecord = Omit<AuditEntry, "seq" | "time"> & { at: number };

export const AuditPage = z.object({
  entries: z.array(AuditEntry),
  /** pass as `cursor` for the next (older) page; null at the end */
  nextCursor: z.string().nullable(),
}).meta({ id: "AuditPage" });

export const AuditQuery = z.object({
  since: z.iso.datetime({ offset: true }).optional().describe("entries at or after this time"),
  until: z.iso.datetime({ offset: true }).optional().describe("entries before this time"),
  actor: z.string().max(128).optional(),
  operation: z.string().max(128).optional(),
  target: z.string().max(256).optional(),
  outcome: z.coerce.number().int().min(0).max(599).optional().meta({ type: "integer" }),
  /** an unscoped admin reads another namespace's log ("*": actions of keys spanning all namespaces, the default for them) */
  namespace: z.string().max(63).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100).meta({ type: "integer" }),
  cursor: z.string().regex(/^[0-9]{1,15}$/).optional(),
});

/** Default: how long audit entries are kept (AUDIT_RETENTION_DAYS overrides). */
export const DEFAULT_AUDIT_RETENTION_DAYS = 90;
