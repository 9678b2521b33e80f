/**
 * RFC 9457 problem details. Every error the API returns has one of these
 * stable `type` URIs, so clients can branch on the type instead of the text.
 */
import { z } from "zod";

export const PROBLEM_TYPES = {
  "validation": { status: 400, title: "The request is not valid" },
  "bad-wasm": { status: 400, title: "The WebAssembly module is not valid" },
  "bad-arguments": { status: 400, title: "The arguments do not fit the function" },
  "unauthenticated": { status: 401, title: "Authentication is required" },
  "invalid-signature": { status: 401, title: "The signature is not valid" },
  "replayed": { status: 401, title: "This signed request was already used" },
  "signature-required": { status: 403, title: "Submissions here must be signed" },
  "forbidden": { status: 403, title: "This credential may not do that" },
  "not-found": { status: 404, title: "Not found" },
  "method-not-allowed": { status: 405, title: "Method not allowed" },
  "conflict": { status: 409, title: "Conflict" },
  "fenced": { status: 409, title: "A newer agent session took this device over" },
  "gone": { status: 410, title: "Gone" },
  "too-large": { status: 413, title: "The request body is too large" },
  "unsupported-media-type": { status: 415, title: "Unsupported media type" },
  "unprocessable": { status: 422, title: "The request cannot be processed" },
  "upgrade-required": { status: 426, title: "Upgrade required" },
  "too-many-streams": { status: 429, title: "Too many open streams" },
  "too-many-in-flight": { status: 429, title: "Too many submissions in flight on this channel" },
  "internal": { status: 500, title: "Internal error" },
  "not-configured": { status: 503, title: "The control plane is not configured for this" },
} as const;

export type ProblemType = keyof typeof PROBLEM_TYPES;
export const problemTypeUri = (t: ProblemType) => `urn:wasmvisor:problem:${t}`;

export const Problem = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string().optional(),
  instance: z.string().optional(),
  requestId: z.string().optional(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  /** a selector matched no usable device: why each candidate was passed over (bounded; see `more`) */
  candidates: z.array(z.object({ device: z.string(), reasons: z.array(z.string()) })).optional(),
  /** how many more candidates were passed over than `candidates` lists */
  more: z.number().int().optional(),
  /** a rollout of the same deployment is active (running, paused or rolling back): its id */
  activeRollout: z.string().optional(),
}).meta({ id: "Problem" });
export type Problem = z.infer<typeof Problem>;

export function makeProblem(
  type: ProblemType,
  detail?: string,
  extra: Partial<Omit<Problem, "type" | "title" | "status">> = {},
): Problem {
  const { status, title } = PROBLEM_TYPES[type];
  return { type: problemTypeUri(type), title, status, ...(detail ? { detail } : {}), ...extra };
}

/** zod issues as problem `errors` entries (a path a human can read). */
export function zodErrors(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.map((i) => ({ path: i.path.map(String).join(".") || "(body)", message: i.message }));
}
