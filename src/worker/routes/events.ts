/**
 * GET /v1/events: the namespace's event stream as server-sent events, from its hub
 * (src/durable/events-object.ts). Filters by device, job, deployment and kind; resumes
 * after Last-Event-ID (header, or ?lastEventId= for clients that cannot set headers).
 */
import { z } from "zod";
import { route } from "../route.js";
import { type App, problem, validationProblem } from "../http.js";
import { callerNamespace } from "../tenancy.js";
import { DeviceId, JobId } from "../../protocol/ids.js";
import { DeploymentId } from "../../protocol/deployment.js";
import { EventFilter, EventKindPattern, EVENT_REPLAY } from "../../protocol/events.js";
import { DEFAULT_NAMESPACE, Namespace } from "../../protocol/keys.js";
import { eventHubStub } from "../../platform/stubs.js";
import { guardStream, STREAM_MAX_MS, STREAM_RECHECK_MS } from "../stream-guard.js";
import { MAX_STREAMS_PER_KEY } from "../../durable/events-object.js";

const EventId = z.string().regex(/^\d{1,15}$/, "an event id (digits)");

const stream = route({
  method: "get",
  path: "/v1/events",
  roles: ["admin", "user"],
  problems: [429],
  summary:
    `The namespace's events as server-sent events (each \`data:\` is a FleetEvent, its \`id:\` the event id): device.registered/online/offline, job.<state>, deployment.<state> (deployment.applied), and kinds other parts publish. ` +
    `Reconnect with Last-Event-ID to get exactly the events missed while they are in the replay window (the newest ${EVENT_REPLAY.maxEvents} events, at most ${EVENT_REPLAY.maxAgeMs / 60_000} minutes); an \`event: gap\` says some had already left it. ` +
    `A stream ends (after a comment saying why) when its session cookie expires, ${STREAM_MAX_MS / 60_000} minutes after it opened with an API key, or within ${STREAM_RECHECK_MS / 1000} s of its credential being revoked or logged out: clients reconnect with Last-Event-ID and are authenticated again. ` +
    `One credential may hold ${MAX_STREAMS_PER_KEY} open streams per namespace (429 past that).`,
  request: {
    query: z.object({
      device: DeviceId.optional(),
      job: JobId.optional(),
      deployment: DeploymentId.optional(),
      kind: z.string().max(400).optional().meta({ description: "comma-separated kinds or families: job.succeeded,device.*" }),
      lastEventId: EventId.optional().meta({ description: "as the Last-Event-ID header, for clients that cannot send headers" }),
      tail: z.coerce.number().int().min(0).max(1000).default(0).meta({ type: "integer", description: "without Last-Event-ID: first replay the newest N matching events" }),
      wait: z.coerce.number().int().min(0).max(3600).optional().meta({ type: "integer", description: "close the stream after this many seconds (0: replay, then close); default: stay open" }),
      namespace: Namespace.optional().meta({ description: "for a key that spans all namespaces (default: default)" }),
    }),
    headers: z.object({ "last-event-id": EventId.optional() }),
  },
  responses: {
    200: {
      description: "A text/event-stream of FleetEvent objects (see components.schemas.FleetEvent), with `retry:`, keepalive comments and `event: gap`",
      content: { "text/event-stream": { schema: z.string() } },
    },
  },
});

export function eventRoutes(app: App) {
  app.openapi(stream, async (c) => {
    const q = c.req.valid("query");
    const scope = callerNamespace(c);
    if (scope !== null && q.namespace !== undefined && q.namespace !== scope) return problem(c, "forbidden", `this key sees only namespace ${scope}`);
    const namespace = scope ?? q.namespace ?? DEFAULT_NAMESPACE;
    const kinds = q.kind?.split(",").map((k) => k.trim()).filter(Boolean);
    const filter = EventFilter.safeParse({ device: q.device, job: q.job, deployment: q.deployment, kinds });
    if (!filter.success) return validationProblem(c, filter.error, "kind filter");
    const last = c.req.valid("header")["last-event-id"] ?? q.lastEventId;
    const p = c.get("principal");
    const holder = p.role === "device" ? `device:${p.deviceId}` : `key:${p.keyId}`;
    const hub = eventHubStub(c.env, namespace);
    const key = crypto.randomUUID();
    const body = await hub.subscribe(namespace, filter.data, last === undefined ? null : Number(last), q.tail, q.wait === undefined ? null : q.wait * 1000, holder, key);
    if (!(body instanceof ReadableStream)) return problem(c, "too-many-streams", body.refused);
    return new Response(guardStream(c, body, () => hub.unsubscribe(namespace, key)), { headers: { "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" } });
  });
}
