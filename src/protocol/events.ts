/**
 * The fleet's event stream (GET /v1/events, server-sent events): what happened to devices,
 * jobs and deployments, in the order the namespace's events object received it. Each event's
 * `id` is the SSE id: monotonic within a namespace's stream, so a client that reconnects with
 * Last-Event-ID gets exactly the events it missed (while they are within the replay window).
 */
import { z } from "zod";
import { DeviceId, JobId } from "./ids.js";
import { DeploymentId } from "./deployment.js";

/** dot-separated lowercase words: device.online, job.succeeded, deployment.applied, rollout.wave-started */
export const EventKind = z.string().regex(/^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$/, "dot-separated lowercase words, e.g. job.succeeded").max(64);

export const FleetEvent = z
  .object({
    id: z.string().describe("monotonic within the namespace's stream; send it back as Last-Event-ID"),
    kind: z.string().describe("device.registered|online|offline, job.<state> (job.queued, job.running, job.succeeded, ...), deployment.<state> (deployment.applied when active), or a kind another part published"),
    at: z.string().describe("when it happened (ISO 8601)"),
    namespace: z.string(),
    device: z.string().nullable(),
    job: z.string().nullable(),
    deployment: z.string().nullable(),
    data: z.record(z.string(), z.unknown()),
  })
  .meta({ id: "FleetEvent" });
export type FleetEvent = z.infer<typeof FleetEvent>;

/** A kind filter: exact kinds, or `prefix.*` for a family (`job.*`). */
export const EventKindPattern = z.string().regex(/^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*(\.\*)?$/, "a kind (job.succeeded) or a family (job.*)").max(64);

export const EventFilter = z.object({
  device: DeviceId.optional(),
  job: JobId.optional(),
  deployment: DeploymentId.optional(),
  /** any of these kinds */
  kinds: z.array(EventKindPattern).max(20).optional(),
});
export type EventFilter = z.infer<typeof EventFilter>;

/** Whether an event passes a filter (used by the events object for replay and live fan-out). */
export function matchesFilter(e: Pick<FleetEvent, "kind" | "device" | "job" | "deployment">, f: EventFilter): boolean {
  if (f.device !== undefined && e.device !== f.device) return false;
  if (f.job !== undefined && e.job !== f.job) return false;
  if (f.deployment !== undefined && e.deployment !== f.deployment) return false;
  if (f.kinds && f.kinds.length > 0) {
    return f.kinds.some((k) => (k.endsWith(".*") ? e.kind.startsWith(k.slice(0, -1)) : e.kind === k));
  }
  return true;
}

/** How long and how many events the stream can replay (docs/observability.md). */
export const EVENT_REPLAY = { maxEvents: 10_000, maxAgeMs: 60 * 60_000 } as const;
