/**
 * Services: long-running modules on a device, supervised by its agent (docs/services.md).
 * Each is addressed by its device and name; a scoped key sees only its namespace's devices
 * (404 otherwise, and the device object checks the namespace again).
 */
import { z } from "zod";
import { DeviceId } from "../../protocol/ids.js";
import { DesiredServices, RemovedServices, RemoveServices, ServiceBySelector, ServiceList, ServiceLogs, ServiceName, ServiceSpec, ServiceView } from "../../protocol/service.js";
import { DEFAULT_NAMESPACE } from "../../protocol/keys.js";
import { placeBySelector, serviceLoad } from "../../durable/fleet.js";
import { noMatchProblem } from "../selector-problem.js";
import { jsonBody, jsonResponse, problemResponse, route } from "../route.js";
import { annotate, fromOutcome, problem, type App, type Ctx } from "../http.js";
import { callerNamespace, canSeeDevice, deviceNamespace } from "../tenancy.js";
import { signingRequired } from "../signing.js";
import { devicePrincipal } from "../auth.js";
import { guardStream } from "../stream-guard.js";
import { EPOCH_HEADER, EpochHeaders } from "../../protocol/agent.js";
import { deviceStub } from "../../platform/stubs.js";
import { moduleInfo } from "../module-store.js";
import { coerceArgs, requiredInterfaces } from "../../protocol/wasm.js";

const deviceParam = z.object({ id: DeviceId });
const serviceParams = z.object({ id: DeviceId, name: ServiceName });

const create = route({
  method: "post",
  path: "/v1/devices/{id}/services",
  problems: [409, 422],
  roles: ["admin", "user"],
  summary: "Create a service on a device: a module's _start or exported function, run until it returns, restarted by its policy; started now, stopped (startStopped), or later (startAt / startAfterMs: PENDING)",
  request: { params: deviceParam, body: jsonBody(ServiceSpec) },
  responses: {
    201: jsonResponse(ServiceView, "Created; the agent starts it and reports its status"),
    403: problemResponse("The credential's role may not call this route, or the device's namespace accepts only signed jobs (services are not signed)"),
  },
});

const createBySelector = route({
  method: "post",
  path: "/v1/services",
  problems: [409, 422],
  roles: ["admin", "user"],
  summary:
    "Create a service on the device a selector picks (labels, capabilities, interfaces, arch, online; the host functions the module imports are added): the healthy matching device (online, not drained, without a service of this name) holding the fewest services. None: 422 with each candidate's reasons. The service then lives under /v1/devices/{device}/services/{name} (Location)",
  request: { body: jsonBody(ServiceBySelector) },
  responses: {
    201: jsonResponse(ServiceView, "Created on `device`; the agent starts it and reports its status"),
    403: problemResponse("The credential's role may not call this route, or the namespace accepts only signed jobs (services are not signed)"),
  },
});

const list = route({
  method: "get",
  path: "/v1/devices/{id}/services",
  roles: ["admin", "user"],
  summary: "The device's services with their status as the agent last reported it (reportedAt says how fresh)",
  request: { params: deviceParam },
  responses: { 200: jsonResponse(ServiceList, "By name") },
});

const get = route({
  method: "get",
  path: "/v1/devices/{id}/services/{name}",
  roles: ["admin", "user"],
  summary: "One service: spec, desired and actual status, reason, exit code, restarts used, last error, started at, CPU and memory",
  request: { params: serviceParams },
  responses: { 200: jsonResponse(ServiceView, "The service") },
});

const action = (verb: "suspend" | "resume" | "kill" | "cancel" | "reset", summary: string) =>
  route({
    method: "post",
    path: `/v1/devices/{id}/services/{name}/${verb}`,
    problems: [409],
    roles: ["admin", "user"],
    summary,
    request: { params: serviceParams },
    responses: { 200: jsonResponse(ServiceView, "Asked of the agent; the status follows its next report") },
  });

const ACTIONS = [
  ["suspend", action("suspend", "Suspend: the service's process is frozen (SIGSTOP: no CPU) until resumed; a service waiting to restart waits for the resume")],
  ["resume", action("resume", "Resume a suspended service: its process continues where it stopped (SIGCONT), or starts if it had none")],
  ["kill", action("kill", "Kill: the service stops for good (KILLED) and is not restarted; a pending start is canceled")],
  ["cancel", action("cancel", "Cancel a pending (delayed) start: the service becomes KILLED without starting")],
  ["reset", action("reset", "Reset the restart budget: the count starts over, and a CRASHED service starts again")],
] as const;

const removeOne = route({
  method: "delete",
  path: "/v1/devices/{id}/services/{name}",
  roles: ["admin", "user"],
  summary: "Remove a service whatever its status: its process ends and its files are deleted on the device",
  request: { params: serviceParams },
  responses: { 200: jsonResponse(RemovedServices, "Removed") },
});

const removeMany = route({
  method: "post",
  path: "/v1/devices/{id}/services/remove",
  roles: ["admin", "user"],
  summary: "Remove several services at once (whatever their status); names not found are listed as absent",
  request: { params: deviceParam, body: jsonBody(RemoveServices) },
  responses: { 200: jsonResponse(RemovedServices, "What was removed, and what was not there") },
});

const logs = route({
  method: "get",
  path: "/v1/devices/{id}/services/{name}/logs",
  roles: ["admin", "user"],
  summary: "The service's recent output lines (a bounded ring); ?follow=1 streams new ones as server-sent events (`line` events) until the service is removed or ?seconds= pass (then `event: end`), or until the credential ends (revoked, logged out, session expired; checked every 30 s; then a comment saying why)",
  request: {
    params: serviceParams,
    query: z.object({
      limit: z.coerce.number().int().min(1).max(1000).default(200),
      after: z.coerce.number().int().min(0).default(0).meta({ type: "integer", description: "only lines after this seq" }),
      follow: z.enum(["0", "1", "true", "false"]).optional(),
      seconds: z.coerce.number().int().min(1).max(3600).default(600).meta({ type: "integer", description: "how long a follow lasts at most" }),
    }),
  },
  responses: {
    200: {
      description: "Lines oldest first (JSON), or an event stream of `line` events (data: a line with its seq) and a final `end`",
      content: { "application/json": { schema: ServiceLogs }, "text/event-stream": { schema: z.string() } },
    },
  },
});

const agentDesired = route({
  method: "get",
  path: "/v1/agent/services",
  roles: ["device"],
  summary: "The services this device must run (desired state: spec, running/suspended/killed, run and reset counters) and their version",
  problems: [409],
  request: { headers: EpochHeaders },
  responses: { 200: jsonResponse(DesiredServices, "Desired services") },
});

/** The device must be visible to the caller; then its object answers (and checks the namespace itself). */
async function visible(c: Ctx, id: string) {
  return (await canSeeDevice(c, id)) ? deviceStub(c.env, id) : null;
}

const NO_DEVICE = "no such device";

/**
 * What every service creation checks before a device is asked: the namespace accepts
 * unsigned work (a service runs a module unsigned, as an unsigned job would, and there is no
 * signed form of a service yet), and the module is uploaded and exports the entry (with
 * arguments that fit it), as for jobs. Answers the host functions the module imports.
 */
async function checkSpec(c: Ctx, namespace: string | null, spec: ServiceSpec): Promise<Response | { requires: string[] }> {
  if (namespace !== null && (await signingRequired(c.env, namespace))) {
    return problem(c, "signature-required", "this namespace accepts only signed jobs, and services are not signed: use a namespace with requireSignedJobs false");
  }
  const info = await moduleInfo(c.env, spec.module);
  if (!info) return problem(c, "unprocessable", `module ${spec.module} has not been uploaded (POST /v1/modules)`);
  const fn = info.exports.find((e) => e.kind === "function" && e.name === (spec.entry ?? "_start"));
  if (!fn?.signature) return problem(c, "unprocessable", `the module exports no function "${spec.entry}"`);
  if (spec.entry !== "_start") {
    const args = coerceArgs(fn.signature, spec.args);
    if (!args.ok) return problem(c, "unprocessable", `${spec.entry}: ${args.message}`);
  }
  return { requires: requiredInterfaces(info.imports) };
}
const FOLLOW_POLL_MS = 1000;

export function serviceRoutes(app: App) {
  app.openapi(agentDesired, async (c) => {
    const p = devicePrincipal(c.get("principal"))!;
    const epoch = Number(c.req.header(EPOCH_HEADER) ?? 0); // the session's epoch (fencing), validated by the header schema
    return fromOutcome(c, await deviceStub(c.env, p.deviceId).desiredServices(p.secret, epoch), (d) => c.json(d, 200));
  });

  app.openapi(removeMany, async (c) => {
    const { id } = c.req.valid("param");
    const stub = await visible(c, id);
    if (!stub) return problem(c, "not-found", NO_DEVICE);
    return fromOutcome(c, await stub.removeServices(callerNamespace(c), c.req.valid("json").names), (r) => c.json(r, 200));
  });

  app.openapi(create, async (c) => {
    const { id } = c.req.valid("param");
    const stub = await visible(c, id);
    if (!stub) return problem(c, "not-found", NO_DEVICE);
    const spec = c.req.valid("json");
    const checked = await checkSpec(c, await deviceNamespace(c, id), spec);
    if (checked instanceof Response) return checked;
    return fromOutcome(c, await stub.createService(callerNamespace(c), spec), (v) => {
      annotate(c, { event: "service created", deviceId: id, service: spec.name });
      return c.json(v, 201);
    });
  });

  app.openapi(createBySelector, async (c) => {
    const { selector, ...spec } = c.req.valid("json");
    const namespace = callerNamespace(c) ?? DEFAULT_NAMESPACE;
    const checked = await checkSpec(c, namespace, spec);
    if (checked instanceof Response) return checked;
    // The job placement's code, measuring load by services held.
    const placed = await placeBySelector(c.env, namespace, selector, checked.requires, [], undefined, serviceLoad(spec.name));
    if (!placed.ok) return noMatchProblem(c, placed.misses, "no healthy device matches the selector");
    annotate(c, { selected: placed.device });
    return fromOutcome(c, await deviceStub(c.env, placed.device).createService(callerNamespace(c), spec), (v) => {
      annotate(c, { event: "service created", deviceId: placed.device, service: spec.name });
      return c.json(v, 201, { Location: `/v1/devices/${placed.device}/services/${spec.name}` });
    });
  });

  app.openapi(list, async (c) => {
    const { id } = c.req.valid("param");
    const stub = await visible(c, id);
    if (!stub) return problem(c, "not-found", NO_DEVICE);
    return fromOutcome(c, await stub.listServices(callerNamespace(c)), (services) => c.json({ services }, 200));
  });

  app.openapi(get, async (c) => {
    const { id, name } = c.req.valid("param");
    const stub = await visible(c, id);
    if (!stub) return problem(c, "not-found", NO_DEVICE);
    return fromOutcome(c, await stub.getService(callerNamespace(c), name), (v) => c.json(v, 200));
  });

  for (const [verb, def] of ACTIONS) {
    app.openapi(def, async (c) => {
      const { id, name } = c.req.valid("param");
      const stub = await visible(c, id);
      if (!stub) return problem(c, "not-found", NO_DEVICE);
      return fromOutcome(c, await stub.serviceAction(callerNamespace(c), name, verb), (v) => {
        annotate(c, { event: `service ${verb}`, deviceId: id, service: name });
        return c.json(v, 200);
      });
    });
  }

  app.openapi(removeOne, async (c) => {
    const { id, name } = c.req.valid("param");
    const stub = await visible(c, id);
    if (!stub) return problem(c, "not-found", NO_DEVICE);
    const out = await stub.removeServices(callerNamespace(c), [name]);
    if (out.ok && out.value.removed.length === 0) return problem(c, "not-found", `no service ${name} on this device`);
    return fromOutcome(c, out, (r) => c.json(r, 200));
  });

  app.openapi(logs, async (c) => {
    const { id, name } = c.req.valid("param");
    const q = c.req.valid("query");
    const stub = await visible(c, id);
    if (!stub) return problem(c, "not-found", NO_DEVICE);
    const namespace = callerNamespace(c);
    const first = await stub.serviceLogs(namespace, name, q.limit, q.after);
    if (!first.ok || !["1", "true"].includes(q.follow ?? "")) return fromOutcome(c, first, (l) => c.json(l, 200));
    // Following: the ring so far, then new lines as the agent's heartbeats bring them.
    const encoder = new TextEncoder();
    const until = Date.now() + q.seconds * 1000;
    let after = q.after;
    let pending = first.value.lines;
    let closed = false;
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        for (;;) {
          if (pending.length) {
            for (const l of pending) controller.enqueue(encoder.encode(`event: line\nid: ${l.seq}\ndata: ${JSON.stringify(l)}\n\n`));
            after = pending.at(-1)!.seq;
            pending = [];
            return;
          }
          if (closed || Date.now() >= until) {
            controller.enqueue(encoder.encode(`event: end\ndata: {}\n\n`));
            controller.close();
            return;
          }
          await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
          const next = await stub.serviceLogs(namespace, name, 1000, after);
          if (!next.ok) closed = true;
          else pending = next.value.lines;
        }
      },
      cancel() {
        closed = true;
      },
    });
    // It ends with its credential too (revoked, logged out, session expired: stream-guard.ts).
    const guarded = guardStream(c, stream, undefined, "reconnect with ?after= the last line's seq (and a valid credential)");
    return new Response(guarded, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
  });
}
