/** Signed deployments: submit, read (per-device state), undeploy, and call their functions. */
import { z } from "zod";
import { CallAccepted, DEPLOYMENT_LIMITS, DeploymentId, DeploymentManifest, DeploymentView, ExportName, ModuleName } from "../../protocol/deployment.js";
import { DEFAULT_NAMESPACE } from "../../protocol/keys.js";
import { DeviceId } from "../../protocol/ids.js";
import { chooseDevice, overallState } from "../../core/calls.js";
import { freeFormQuery, jsonResponse, route } from "../route.js";
import { select } from "../../core/selector.js";
import { noMatchProblem } from "../selector-problem.js";
import { fleetCandidates } from "../../durable/fleet.js";
import { annotate, type App, type Ctx, problem } from "../http.js";
import { callerNamespace, deviceNamespace } from "../tenancy.js";
import { verifySignedClaim } from "../signing.js";
import { applyDeployment, removeDeployment } from "../deploy.js";
import { placeCall } from "../calls.js";
import { mapWithConcurrency } from "../../core/concurrency.js";
import { jobLinks, JobView, LIMITS } from "../../protocol/job.js";
import { TtlCache } from "../../core/ttl-cache.js";
import { deploymentStub, registryStub, deviceStub } from "../../platform/stubs.js";

const NamespaceQuery = z.object({ namespace: z.string().max(64).optional() });

const submit = route({
  method: "post",
  path: "/v1/deployments",
  problems: [404, 409, 422],
  roles: ["admin", "user"],
  summary:
    "Deploy a signed manifest: a compact JWT (EdDSA or ES256, kid of a registered orchestrator key) whose `deployment` claim is the manifest; exp, iat and jti are required, a jti is accepted once. All or nothing across devices.",
  request: { body: { required: true, content: { "application/jose": { schema: z.string().meta({ description: "compact JWS" }) }, "application/jwt": { schema: z.string().meta({ description: "compact JWS" }) } } } },
  responses: { 201: jsonResponse(DeploymentView, "Recorded; devices apply it and report (see GET)") },
});

const idParams = z.object({ id: DeploymentId });

const DeploymentListItem = z.object({ namespace: z.string(), id: DeploymentId, source: z.enum(["signed", "wasmiot"]), generation: z.number().int(), updatedAt: z.string() });

const list = route({
  method: "get",
  path: "/v1/deployments",
  roles: ["admin", "user"],
  summary: "Deployments of the caller's namespace (all, for a global key) by id; GET /v1/deployments/:id for their state",
  request: { query: z.object({ limit: z.coerce.number().int().min(1).max(500).default(100), cursor: z.string().max(200).optional() }) },
  responses: { 200: jsonResponse(z.object({ deployments: z.array(DeploymentListItem), next: z.string().nullable() }), "A page") },
});

const get = route({
  method: "get",
  path: "/v1/deployments/{id}",
  roles: ["admin", "user"],
  summary: "A deployment: its modules and each device's state (pending, applying, active, failed with a reason)",
  request: { params: idParams, query: NamespaceQuery },
  responses: { 200: jsonResponse(DeploymentView, "The deployment") },
});

const remove = route({
  method: "delete",
  path: "/v1/deployments/{id}",
  problems: [409],
  roles: ["admin", "user"],
  summary: "Undeploy: agents remove its files; calls still queued for it are canceled",
  request: { params: idParams, query: NamespaceQuery },
  responses: { 200: jsonResponse(z.object({ id: DeploymentId, devices: z.array(DeviceId) }), "Removed from these devices") },
});

const callParams = z.object({ id: DeploymentId, module: ModuleName, function: ExportName });
const callQuery = z.looseObject({
  device: DeviceId.optional().meta({ description: "one of several devices holding the module; other query parameters are the function's, by name" }),
  namespace: NamespaceQuery.shape.namespace,
});
/** The function's parameters by name: any other query name is one of them, so none is refused as unknown. */
const functionParameters = freeFormQuery("parameters", "The function's parameters by name (`?minuend=10&subtrahend=3`); any query name other than `device` and `namespace` is one of them");
const callResponses = {
  202: jsonResponse(CallAccepted, "Queued on the device; the result appears at links.result"),
  200: jsonResponse(JobView, "With `Prefer: wait=N`: the call ended within N seconds"),
};
const callSummary =
  "Call a deployed function: parameters by name (query, JSON body or form fields), multipart files as its input files; answers 202 at once, or with `Prefer: wait=N` the ended job (200). Query names `device` and `namespace` are reserved";

/** Documented, not validated here: binding by name (calls.ts) reads the body and names a missing or mistyped parameter. */
const callBody = {
  required: false,
  content: {
    "application/json": { schema: { type: "object", description: "parameters by name", additionalProperties: true } as object },
    "application/x-www-form-urlencoded": { schema: { type: "object", description: "parameters by name", additionalProperties: true } as object },
    "multipart/form-data": { schema: { type: "object", description: "parameters by name; file parts are the call's input files", additionalProperties: true } as object },
  },
};
const callPost = route({ method: "post", path: "/v1/deployments/{id}/modules/{module}/{function}", roles: ["admin", "user"], problems: [409, 422], summary: callSummary, freeFormQuery: functionParameters, request: { params: callParams, query: callQuery, body: callBody }, responses: callResponses });
const callGet = route({ method: "get", path: "/v1/deployments/{id}/modules/{module}/{function}", roles: ["admin", "user"], problems: [409, 422], summary: callSummary, freeFormQuery: functionParameters, request: { params: callParams, query: callQuery }, responses: callResponses });

/**
 * Where a deployment's modules are, per isolate for a moment: a call saves the hop to the
 * deployment's object. A stale entry can only send a call where the device object refuses it
 * (404); deploys and undeploys through this isolate drop it at once.
 */
const placements = new TtlCache<string, Awaited<ReturnType<ReturnType<typeof deploymentStub>["record"]>>>(2_000);

/** RFC 7240 `Prefer: wait=N`: wait up to N seconds (bounded) for the call to end. Not a query parameter, which could be the function's. */
function preferredWait(prefer: string | undefined): number {
  const m = /(?:^|[;,\s])wait=(\d+)/i.exec(prefer ?? "");
  return m ? Math.min(Number(m[1]), LIMITS.maxWaitSeconds) : 0;
}

/** Whose deployment this is: a scoped key's namespace, or (for a global key) ?namespace= or the default. */
const namespaceOf = (c: Ctx, fallback?: string) => callerNamespace(c) ?? fallback ?? DEFAULT_NAMESPACE;

async function view(c: Ctx, namespace: string, id: string) {
  const record = await deploymentStub(c.env, namespace, id).record(namespace);
  if (!record) return null;
  const devices = [...new Set(record.placements.map((p) => p.device))];
  const states = await mapWithConcurrency(devices, 16, async (d) => {
    const s = await deviceStub(c.env, d).deploymentStatus(namespace, id);
    return s ?? { device: d, generation: record.generation, state: "pending" as const, reason: null, updatedAt: record.updatedAt };
  });
  const modules = [...new Set(record.placements.map((p) => p.module))].map((name) => {
    const ps = record.placements.filter((p) => p.module === name);
    return { name, digest: ps[0]!.digest, devices: ps.map((p) => p.device), functions: ps[0]!.functions };
  });
  return { id, namespace, source: record.source, signedBy: record.signedBy, createdAt: record.createdAt, updatedAt: record.updatedAt, state: overallState(states.map((s) => s.state)), devices: states, modules, ...(record.failover.length > 0 ? { failover: record.failover } : {}) } satisfies DeploymentView;
}

export function deploymentRoutes(app: App) {
  app.openapi(submit, async (c) => {
    const verified = await verifySignedClaim(c.env, (await c.req.text()).trim(), "deployment", DeploymentManifest);
    if (!verified.ok) return problem(c, verified.problem, verified.detail);
    const caller = callerNamespace(c);
    if (caller !== null && verified.keyNamespace !== null && verified.keyNamespace !== caller) {
      return problem(c, "invalid-signature", `key ${verified.kid} belongs to another namespace`);
    }
    const namespace = caller ?? verified.keyNamespace ?? DEFAULT_NAMESPACE;
    const manifest = verified.value;
    annotate(c, { event: "deploy", deployment: manifest.id, kid: verified.kid });
    if (manifest.selector) {
      // Every module goes to every device the selector picks now (a staged change of many devices: POST /v1/rollouts).
      const { matches, misses } = select(manifest.selector, await fleetCandidates(c.env, namespace));
      if (matches.length === 0) return noMatchProblem(c, misses);
      if (matches.length > DEPLOYMENT_LIMITS.maxDevices) return problem(c, "unprocessable", `the selector matches ${matches.length} devices; a deployment takes at most ${DEPLOYMENT_LIMITS.maxDevices} (use POST /v1/rollouts)`);
      for (const m of manifest.modules) m.devices = matches.map((d) => d.id);
    }
    const out = await applyDeployment(c.env, {
      namespace,
      id: manifest.id,
      source: "signed",
      signedBy: verified.kid,
      modules: manifest.modules.map((m) => ({ name: m.name, digest: m.digest, ...(m.size ? { size: m.size } : {}), ...(m.url ? { url: m.url } : {}), devices: m.devices, functions: m.functions, mounts: m.mounts, ...(m.failover ? { failover: m.failover } : {}) })),
      scope: "all",
      deviceNamespace: (d) => deviceNamespace(c, d),
    });
    if (!out.ok) return problem(c, out.problem, out.detail);
    placements.delete(`${namespace}/${manifest.id}`);
    const shown = await view(c, namespace, manifest.id);
    return c.json(shown!, 201, { Location: `/v1/deployments/${manifest.id}` });
  });

  app.openapi(list, async (c) => {
    const q = c.req.valid("query");
    const page = await registryStub(c.env).listDeployments(callerNamespace(c), q.limit, q.cursor ?? null);
    return c.json({ deployments: page.deployments as z.infer<typeof DeploymentListItem>[], next: page.next }, 200);
  });

  app.openapi(get, async (c) => {
    const { id } = c.req.valid("param");
    const shown = await view(c, namespaceOf(c, c.req.valid("query").namespace), id);
    return shown ? c.json(shown, 200) : problem(c, "not-found", `deployment ${id} does not exist`);
  });

  app.openapi(remove, async (c) => {
    const { id } = c.req.valid("param");
    const namespace = namespaceOf(c, c.req.valid("query").namespace);
    const out = await removeDeployment(c.env, namespace, id, "all");
    placements.delete(`${namespace}/${id}`);
    if (!out.ok) return problem(c, out.problem, out.detail);
    annotate(c, { event: "undeploy", deployment: id });
    return c.json({ id, devices: out.value.devices }, 200);
  });

  const call = async (c: Ctx) => {
    const { id, module, function: fn } = c.req.param() as z.infer<typeof callParams>;
    const { device: wanted, namespace: nsParam, ...query } = c.req.query();
    const namespace = namespaceOf(c, nsParam);
    // A deployment whose placements fail over is read fresh: a call must follow a move at once, not 2 s later.
    const record = await placements.get(`${namespace}/${id}`, () => deploymentStub(c.env, namespace, id).record(namespace), (r) => r !== null && r.failover.length === 0);
    const holders = record?.placements.filter((p) => p.module === module).map((p) => p.device) ?? [];
    if (!record) return problem(c, "not-found", `deployment ${id} does not exist`);
    if (holders.length === 0) return problem(c, "not-found", `module ${module} not found for this deployment`);
    if (wanted && !holders.includes(wanted)) return problem(c, "not-found", `module ${module} is not deployed on ${wanted}`);
    // Placement asks the holders only when there is a choice to make.
    const online = wanted || holders.length === 1 ? [] : await mapWithConcurrency(holders, 8, async (d) => {
      const v = await deviceStub(c.env, d).view(namespace);
      return { id: d, online: v.ok && v.value.status === "online" };
    });
    const device = wanted ?? (holders.length === 1 ? holders[0]! : chooseDevice(online)!);
    const waitSeconds = preferredWait(c.req.header("prefer"));
    const out = await placeCall(c, { namespace, device, deployment: id, module, function: fn }, query, waitSeconds * 1000);
    if (!out.ok) return problem(c, out.problem, out.detail);
    const { done, job } = out.value;
    annotate(c, { event: "call", deployment: id, module, function: fn, jobId: job.id });
    const applied: Record<string, string> = waitSeconds > 0 ? { "Preference-Applied": `wait=${waitSeconds}` } : {};
    if (done && waitSeconds > 0) return c.json(job, 200, { Location: job.links.self, ...applied });
    return c.json({ job: job.id, device, links: jobLinks(job.id) }, 202, { Location: job.links.self, ...applied });
  };
  app.openapi(callPost, call);
  app.openapi(callGet, call);
}
