/**
 * The wasmiot-compatible surface: one device behind wasmvisor answers as a
 * wasmiot supervisor would, so an unmodified wasmiot orchestrator can deploy
 * to it, call its functions and follow result links. Two ways in, both off
 * unless WASMIOT_FACADE_DOMAIN is set:
 *  - `<label>.<domain>`: the label is an unguessable per-device capability
 *    (issued and revoked with /v1/devices/:id/wasmiot-facade), the credential a
 *    legacy orchestrator carries in the address it was given;
 *  - `/wasmiot/<deviceId>/...` with a normal API key, for clients that send headers.
 * It keeps wasmiot's contract, not its defects: bad input is a 4xx, results
 * are never overwritten, deployments never share files.
 */
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { DEPLOYMENT_LIMITS } from "../../protocol/deployment.js";
import { z } from "zod";
import { WasmiotManifest } from "../../protocol/wasmiot.js";
import { DeviceId } from "../../protocol/ids.js";
import { makeProblem, type ProblemType } from "../../protocol/problem.js";
import { historyEntry, planWasmiot, type FacadeTarget } from "../../core/wasmiot.js";
import { TtlCache } from "../../core/ttl-cache.js";
import { applyDeployment, removeDeployment } from "../deploy.js";
import { placeCall } from "../calls.js";
import { allow } from "../auth.js";
import { canSeeDevice, deviceNamespace } from "../tenancy.js";
import { freeFormQuery, jsonResponse, operationIdOf, problemResponse, route } from "../route.js";
import { annotate, problem, type App, type AppEnv, type Ctx } from "../http.js";
import { registryStub, deviceStub } from "../../platform/stubs.js";
import { outputKey } from "../../platform/r2-keys.js";

/** Which device a facade request is for, the base URL its links start with, and the device's namespace (the facade acts in it). */
type Facade = { device: string; base: string; namespace: string };
type FacadeEnv = AppEnv & { Variables: AppEnv["Variables"] & { facade: Facade } };
type FCtx = Context<FacadeEnv>;

const HISTORY_LIMIT = 100;
/** The shared helpers take the app's context; the facade's only adds a variable. */
const asCtx = (c: FCtx) => c as unknown as Ctx;
const labelCache = new TtlCache<string, string | null>(5_000);

const facadeDomain = (c: { env: AppEnv["Bindings"] }) => c.env.WASMIOT_FACADE_DOMAIN?.toLowerCase().replace(/^\.+|\.+$/g, "") || null;

/** wasmiot clients read `result` on errors; problem+json carries it as an extension member. */
function fail(c: Ctx | FCtx, type: ProblemType, detail: string) {
  const body = { ...makeProblem(type, detail, { instance: c.req.path }), result: detail };
  return new Response(JSON.stringify(body), { status: body.status, headers: { "content-type": "application/problem+json" } });
}

/** The device a `<label>.<domain>` host names, if any. */
async function deviceForHost(env: AppEnv["Bindings"], domain: string, hostname: string): Promise<string | null> {
  const host = hostname.toLowerCase();
  if (!host.endsWith(`.${domain}`)) return null;
  const label = host.slice(0, -domain.length - 1);
  if (!/^[a-z2-7]{26}$/.test(label)) return null;
  return labelCache.get(label, () => registryStub(env).facadeDevice(label));
}

/** A URL that names one of our facade devices (by label host, or /wasmiot/<id> on this host). */
async function resolveTarget(c: Ctx, url: URL): Promise<FacadeTarget | null> {
  const domain = facadeDomain(c)!;
  const byHost = await deviceForHost(c.env, domain, url.hostname);
  if (byHost) return { device: byHost, base: url.origin };
  const m = /^\/wasmiot\/(d[a-z2-7]{16})\//.exec(url.pathname);
  if (m && url.host === new URL(c.req.url).host) return { device: m[1]!, base: `${url.origin}/wasmiot/${m[1]}` };
  return null;
}

function buildFacade() {
  const f = new Hono<FacadeEnv>();

  const deploy = async (c: FCtx) => {
    const { device } = c.get("facade");
    const raw = await c.req.json().catch(() => undefined);
    const parsed = WasmiotManifest.safeParse(raw);
    if (!parsed.success) {
      return fail(c, "validation", `Non-existent or malformed deployment data: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ")}`);
    }
    const manifest = parsed.data;
    const { namespace } = c.get("facade");
    // Chain targets are resolved first (a lookup each), then planned without I/O.
    const targets = new Map<string, FacadeTarget | null>();
    for (const fns of Object.values(manifest.instructions.modules)) {
      for (const step of Object.values(fns)) {
        if (!step.to) continue;
        const url = new URL(step.to.url.replace(/\/+$/, "") + "/" + step.to.path.replace(/^\/+/, ""));
        const t = await resolveTarget(asCtx(c), url);
        targets.set(url.toString(), t && (await deviceNamespace(asCtx(c), t.device)) === namespace ? t : null);
      }
    }
    const plan = planWasmiot(manifest, (url) => targets.get(url.toString()) ?? null);
    if (!plan.ok) return fail(c, "unprocessable", plan.detail);
    const out = await applyDeployment(c.env, {
      namespace,
      id: manifest.deploymentId,
      source: "wasmiot",
      signedBy: null,
      modules: plan.modules.map((m) => ({ name: m.name, url: m.binaryUrl, devices: [device], functions: m.functions, mounts: m.mounts })),
      scope: { device },
      deviceNamespace: (d) => deviceNamespace(asCtx(c), d),
    });
    if (!out.ok) return fail(c, out.problem, out.detail);
    annotate(asCtx(c), { event: "wasmiot deploy", deployment: manifest.deploymentId, device });
    return c.json({ status: "success" }, 200);
  };
  f.post("/deploy", deploy);

  f.delete("/deploy/:id", async (c) => {
    const { device } = c.get("facade");
    const out = await removeDeployment(c.env, c.get("facade").namespace, c.req.param("id"), { device });
    return out.ok ? c.json({ status: "success" }, 200) : fail(c, out.problem, out.detail);
  });

  f.get("/health", async (c) => {
    const info = await deviceStub(c.env, c.get("facade").device).facadeInfo(c.get("facade").namespace);
    const h = info?.health;
    if (!h) return fail(c, "not-found", "the device has not reported its health yet");
    return c.json({ cpuUsage: h.cpuPercent, memoryUsage: h.memoryTotalBytes > 0 ? h.memoryUsedBytes / h.memoryTotalBytes : 0 }, 200);
  });

  f.get("/.well-known/wasmiot-device-description", async (c) => {
    const info = await deviceStub(c.env, c.get("facade").device).facadeInfo(c.get("facade").namespace);
    if (!info) return fail(c, "not-found", "no such device");
    const { platform, supervisorInterfaces } = info.description;
    return c.json({ platform: { cpu: { clockSpeed: platform.cpu.clockSpeed, humanReadableName: platform.cpu.humanReadableName }, memory: platform.memory }, supervisorInterfaces }, 200);
  });

  f.get("/request-history", async (c) => {
    const { device, base } = c.get("facade");
    const calls = await deviceStub(c.env, device).calls(c.get("facade").namespace, HISTORY_LIMIT);
    return c.json(calls.map((s) => historyEntry(s, base)).filter((e) => e !== null), 200);
  });

  f.get("/request-history/:id", async (c) => {
    const { device, base } = c.get("facade");
    const [found] = await deviceStub(c.env, device).calls(c.get("facade").namespace, 1, c.req.param("id"));
    const entry = found ? historyEntry(found, base) : null;
    return entry ? c.json(entry, 200) : fail(c, "not-found", "no matching entry in history");
  });

  /** The stable per-call URL of an output file (wasmiot's own routes below serve the latest one). */
  f.get("/request-history/:id/files/:name", async (c) => {
    const [found] = await deviceStub(c.env, c.get("facade").device).calls(c.get("facade").namespace, 1, c.req.param("id"));
    return serveOutput(c, found?.job.id ?? null, c.req.param("name"), found?.job.outputs?.find((o) => o.name === c.req.param("name"))?.mediaType);
  });

  f.get("/module_results/:module/:name", async (c) => {
    const { module, name } = c.req.param();
    const jobId = await deviceStub(c.env, c.get("facade").device).latestOutput(c.get("facade").namespace, module, null, name);
    return serveOutput(c, jobId, name);
  });

  const call = async (c: FCtx) => {
    const { device, base, namespace } = c.get("facade");
    const { deployment, module, fn } = c.req.param() as { deployment: string; module: string; fn: string };
    const out = await placeCall(asCtx(c), { namespace, device, deployment, module, function: fn }, c.req.query());
    if (!out.ok) return fail(c, out.problem, out.detail);
    annotate(asCtx(c), { event: "wasmiot call", deployment, module, function: fn, jobId: out.value.job.id });
    return c.json({ resultUrl: `${base}/request-history/${out.value.job.id}` }, 200);
  };
  f.get("/:deployment/modules/:module/:fn", call);
  f.post("/:deployment/modules/:module/:fn", call);

  f.get("/:deployment/modules/:module/:fn/:name", async (c) => {
    const { module, fn, name } = c.req.param();
    const jobId = await deviceStub(c.env, c.get("facade").device).latestOutput(c.get("facade").namespace, module, fn, name);
    return serveOutput(c, jobId, name);
  });

  f.notFound((c) => fail(c, "not-found", `no route ${c.req.method} ${c.req.path}`));
  return f;
}

async function serveOutput(c: FCtx, jobId: string | null, name: string, mediaType = "application/octet-stream") {
  const obj = jobId ? await c.env.MODULES.get(outputKey(jobId, name)) : null;
  if (!obj) return fail(c, "not-found", `no output file ${name}`);
  return new Response(obj.body, { headers: { "content-type": mediaType, "content-length": String(obj.size) } });
}

/** What a dispatched request carries into the facade's router: the device, the base URL, and the outer request's context. */
const dispatched = new WeakMap<Request, { facade: Facade; outer: Ctx }>();

/** Built once: the facade's router, behind the step that takes the dispatched context and a body limit. */
const facadeApp = new Hono<FacadeEnv>()
  .use(async (fc, next) => {
    const from = dispatched.get(fc.req.raw)!;
    fc.set("facade", from.facade);
    fc.set("requestId", from.outer.get("requestId"));
    fc.set("logFields", {});
    await next();
    annotate(from.outer, { facade: "wasmiot", device: from.facade.device, ...fc.get("logFields") });
  })
  // After the step above: the limit may replace the request (a chunked body), which would hide it from the map.
  .use(bodyLimit({ maxSize: DEPLOYMENT_LIMITS.maxCallBodyBytes, onError: (fc) => fail(fc, "too-large", `request bodies are limited to ${DEPLOYMENT_LIMITS.maxCallBodyBytes} bytes`) }))
  .route("/", buildFacade())
  // A path the facade does not serve, as problem+json like every other error it answers.
  .notFound((fc) => fail(fc, "not-found", `no route ${fc.req.method} ${fc.req.path}`));

/** Runs a facade request for `device`, with the path the wasmiot client meant (`//deploy` is `/deploy`). */
async function dispatch(c: Ctx, device: string, base: string, path: string) {
  const namespace = await deviceNamespace(c, device);
  if (namespace === null) return problem(c, "not-found", `no device ${device}`);
  const url = new URL(c.req.url);
  url.pathname = path.replace(/^\/+/, "/") || "/";
  const request = new Request(url, c.req.raw);
  dispatched.set(request, { facade: { device, base, namespace }, outer: c });
  return facadeApp.fetch(request, c.env, c.executionCtx);
}

const FacadeLabelView = z.object({ device: DeviceId, label: z.string(), host: z.string(), pathBase: z.string() });

const issue = route({
  method: "post",
  path: "/v1/devices/{id}/wasmiot-facade",
  problems: [422, 503],
  roles: ["admin", "user"],
  summary:
    "The device's wasmiot facade label: the device answers as a wasmiot supervisor at <label>.<WASMIOT_FACADE_DOMAIN>. " +
    "Asking again answers the same label (200); `rotate=true` issues a new one and the old stops answering (201)",
  request: { params: z.object({ id: DeviceId }), query: z.object({ rotate: z.enum(["true", "false"]).default("false") }) },
  responses: {
    200: jsonResponse(FacadeLabelView, "The label in force (the label is the capability: keep it like a key)"),
    201: jsonResponse(FacadeLabelView, "A new label; any older one stops answering"),
  },
});

const revoke = route({
  method: "delete",
  path: "/v1/devices/{id}/wasmiot-facade",
  roles: ["admin", "user"],
  summary: "Revoke the device's wasmiot facade label",
  request: { params: z.object({ id: DeviceId }) },
  responses: { 200: jsonResponse(z.object({ device: DeviceId, revoked: z.boolean() }), "Revoked") },
});

/**
 * The /wasmiot/{device}/ form in the OpenAPI document (the host-based form serves the same
 * paths at the root of <label>.<domain>, without a credential). Documentation only: the
 * facade's own router serves them.
 */
const FACADE_DOCS: [method: "get" | "post" | "delete", path: string, summary: string][] = [
  ["post", "/deploy", "Deploy a wasmiot manifest as the wasmiot orchestrator sends it (also //deploy)"],
  ["delete", "/deploy/{deployment}", "Undeploy"],
  ["get", "/health", "{cpuUsage 0-100, memoryUsage 0-1} from the agent's latest heartbeat"],
  ["get", "/.well-known/wasmiot-device-description", "{platform, supervisorInterfaces}"],
  ["get", "/{deployment}/modules/{module}/{function}", "Call a function (parameters by name in the query): {resultUrl}"],
  ["post", "/{deployment}/modules/{module}/{function}", "Call a function (multipart files are its execution mounts): {resultUrl}"],
  ["get", "/request-history", "The newest calls, as wasmiot history entries"],
  ["get", "/request-history/{request}", "One call's entry; 404 until it is done"],
  ["get", "/request-history/{request}/files/{name}", "One call's output file (never overwritten)"],
  ["get", "/module_results/{module}/{name}", "The latest output file of a module"],
];

/** The facade answers as the wasmiot supervisor does: a call's query is its function's parameters, and no query name is refused. */
const facadeQuery = (path: string) =>
  path.includes("/modules/{module}/{function}")
    ? freeFormQuery("parameters", "The function's parameters by name (`?minuend=10&subtrahend=3`)")
    : freeFormQuery("ignored", "Taken and ignored, as the wasmiot supervisor does: the facade refuses no query name");

function documentFacade(app: App) {
  for (const [method, path, summary] of FACADE_DOCS) {
    const names = [...`/wasmiot/{device}${path}`.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
    app.openAPIRegistry.registerPath({
      method,
      path: `/wasmiot/{device}${path}`,
      operationId: operationIdOf(method, `/wasmiot/{device}${path}`),
      tags: ["wasmiot facade"],
      summary,
      security: [{ bearer: [] }],
      "x-roles": ["admin", "user"],
      parameters: [facadeQuery(path)],
      request: { params: z.object(Object.fromEntries(names.map((n) => [n, z.string()]))) },
      responses: {
        200: { description: "As the wasmiot supervisor answers", content: { "application/json": { schema: z.unknown() } } },
        ...Object.fromEntries(
          ([400, 401, 403, 404, 409, 413, 415, 422, 500] as const).map((s) => [s, problemResponse(`${s}: problem+json, with the wasmiot supervisor's message in \`result\``)]),
        ),
      },
    });
  }
}

export function wasmiotRoutes(app: App) {
  documentFacade(app);
  // Host-based: before everything else, since these requests carry no credential.
  app.use(async (c, next) => {
    const domain = facadeDomain(c);
    if (!domain) return next();
    const hostname = new URL(c.req.url).hostname;
    if (!hostname.toLowerCase().endsWith(`.${domain}`)) return next();
    const device = await deviceForHost(c.env, domain, hostname);
    if (!device) return problem(c, "not-found", "no device answers at this host");
    return dispatch(c, device, new URL(c.req.url).origin, new URL(c.req.url).pathname);
  });

  app.all("/wasmiot/:device/*", allow(["admin", "user"]), async (c) => {
    const device = c.req.param("device");
    if (!facadeDomain(c)) return problem(c, "not-found", "the wasmiot facade is not enabled (WASMIOT_FACADE_DOMAIN)");
    if (!DeviceId.safeParse(device).success || !(await canSeeDevice(c, device))) return problem(c, "not-found", `no device ${device}`);
    const url = new URL(c.req.url);
    return dispatch(c, device, `${url.origin}/wasmiot/${device}`, url.pathname.slice(`/wasmiot/${device}`.length));
  });

  app.openapi(issue, async (c) => {
    const { id } = c.req.valid("param");
    const domain = facadeDomain(c);
    if (!domain) return problem(c, "unprocessable", "the wasmiot facade is not enabled (set WASMIOT_FACADE_DOMAIN)");
    if (!(await canSeeDevice(c, id)) || (await deviceNamespace(c, id)) === null) return problem(c, "not-found", `no device ${id}`);
    const out = await registryStub(c.env).issueFacadeLabel(id, c.req.valid("query").rotate === "true");
    if (!out) return problem(c, "not-configured", "facade labels cannot be issued: the control plane's DEVICE_CREDENTIAL_KEY is not set");
    if (out.issued) labelCache.clear(); // a rotated label's predecessor stops answering here at once
    const view = { device: id, label: out.label, host: `${out.label}.${domain}`, pathBase: `/wasmiot/${id}` };
    return out.issued ? c.json(view, 201) : c.json(view, 200);
  });

  app.openapi(revoke, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await canSeeDevice(c, id)) || (await deviceNamespace(c, id)) === null) return problem(c, "not-found", `no device ${id}`);
    const revoked = await registryStub(c.env).revokeFacadeLabel(id);
    labelCache.clear();
    return c.json({ device: id, revoked }, 200);
  });
}
