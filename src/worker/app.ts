/** The control plane's HTTP surface: middleware, routes (one file per resource), error mapping. */
import { OpenAPIHono } from "@hono/zod-openapi";
import { HTTPException } from "hono/http-exception";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { LIMITS } from "../protocol/job.js";
import { log, problem, setLogLevel, traceFields, validationProblem, type AppEnv } from "./http.js";
import { continueTrace, formatTraceparent } from "../core/trace.js";
import { healthRoutes } from "./routes/health.js";
import { keyRoutes } from "./routes/keys.js";
import { deviceRoutes } from "./routes/devices.js";
import { moduleRoutes } from "./routes/modules.js";
import { jobRoutes } from "./routes/jobs.js";
import { channelRoutes } from "./routes/channel.js";
import { agentRoutes } from "./routes/agent.js";
import { API_VERSION, infoRoutes } from "./routes/info.js";
import { rpcRoutes } from "./routes/rpc.js";
import { orchestratorKeyRoutes } from "./routes/orchestrator-keys.js";
import { namespaceRoutes } from "./routes/namespaces.js";
import { deploymentRoutes } from "./routes/deployments.js";
import { rolloutRoutes } from "./routes/rollouts.js";
import { agentFileRoutes } from "./routes/agent-files.js";
import { wasmiotRoutes } from "./routes/wasmiot.js";
import { scheduleRoutes } from "./routes/schedules.js";
import { serviceRoutes } from "./routes/services.js";
import { eventRoutes } from "./routes/events.js";
import { sessionRoutes } from "./routes/session.js";
import { commandRoutes } from "./routes/commands.js";
import { metricsRoutes } from "./routes/metrics.js";
import { auditRoutes } from "./routes/audit.js";
import { auditTrail } from "./audit.js";
import { DEPLOYMENT_LIMITS, DeploymentManifest } from "../protocol/deployment.js";
import { allowedMethods } from "./methods.js";
import { FleetEvent } from "../protocol/events.js";
import { authenticate } from "./auth.js";

const API_REFERENCE_PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>wasmvisor API</title>
  <link rel="stylesheet" href="/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
  <div id="reference"></div>
  <script src="/vendor/swagger-ui/swagger-ui-bundle.js"></script>
  <script src="/api-reference.js"></script>
</body>
</html>`;

export function createApp() {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => (result.success ? undefined : validationProblem(c, result.error)),
  });

  app.use(async (c, next) => {
    setLogLevel(c.env.LOG_LEVEL);
    await next();
  });
  app.use(requestId({ headerName: "x-request-id" }));
  // W3C trace context: continue the caller's trace (a new span of ours) or start one; answered back.
  app.use(async (c, next) => {
    const trace = continueTrace(c.req.header("traceparent"));
    c.set("trace", trace);
    await next();
    const value = formatTraceparent(trace);
    try {
      c.res.headers.set("traceparent", value);
    } catch {
      // an immutable response (passed through from an object): copy it to add the header
      c.res = new Response(c.res.body, c.res);
      c.res.headers.set("traceparent", value);
    }
  });
  app.use(async (c, next) => {
    const started = Date.now();
    await next();
    // The long poll is the agent's idle loop: logging each one would drown everything else.
    if (c.req.path === "/v1/agent/jobs" && c.res.status === 200) return;
    log(c.res.status >= 500 ? "error" : "info", "request", {
      requestId: c.get("requestId"),
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      durationMs: Date.now() - started,
      role: c.get("principal")?.role,
      ...traceFields(c),
      ...c.get("logFields"),
    });
  });
  // Records mutating requests once their response is decided (after the log line's fields are in).
  app.use(auditTrail());
  wasmiotRoutes(app); // first: its host-based requests carry no credential and skip the /v1 limits

  // The caller first: a bad credential is refused before the body is measured or read.
  app.use("/v1/*", authenticate());
  app.use("/rpc", authenticate());

  const jsonLimit = (maxSize: number) =>
    bodyLimit({ maxSize, onError: (c) => problem(c, "too-large", `this request body is limited to ${maxSize} bytes`) });
  const batchLimit = jsonLimit(LIMITS.maxBatchBodyBytes);
  const defaultLimit = jsonLimit(LIMITS.maxJsonBodyBytes);
  const callLimit = jsonLimit(DEPLOYMENT_LIMITS.maxCallBodyBytes);
  const outputLimit = jsonLimit(DEPLOYMENT_LIMITS.maxOutputFileBytes);
  app.use("/v1/*", async (c, next) => {
    const path = c.req.path;
    if (path === "/v1/modules") return next(); // its own, larger limit
    if (/^\/v1\/deployments\/[^/]+\/modules\//.test(path)) return callLimit(c, next); // calls may carry files
    if (/^\/v1\/agent\/jobs\/[^/]+\/outputs\//.test(path)) return outputLimit(c, next);
    return (path === "/v1/jobs/batch" ? batchLimit : defaultLimit)(c, next);
  });

  healthRoutes(app);
  keyRoutes(app);
  deviceRoutes(app);
  moduleRoutes(app);
  channelRoutes(app); // before jobRoutes: GET /v1/jobs/channel, not /v1/jobs/{id}
  jobRoutes(app);
  agentRoutes(app);
  infoRoutes(app);
  orchestratorKeyRoutes(app);
  namespaceRoutes(app);
  deploymentRoutes(app);
  rolloutRoutes(app);
  agentFileRoutes(app);
  scheduleRoutes(app);
  serviceRoutes(app);
  commandRoutes(app);
  rpcRoutes(app);
  sessionRoutes(app);
  eventRoutes(app);
  metricsRoutes(app);
  auditRoutes(app);

  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer" });
  app.openAPIRegistry.registerComponent("securitySchemes", "session", {
    type: "apiKey",
    in: "cookie",
    name: "__Host-wasmvisor_session",
    description: "The dashboard's session (POST /v1/session; `wasmvisor_session` over plain http to a non-loopback host); requests that change something also send X-Wasmvisor-CSRF: 1",
  });
  app.openAPIRegistry.register("FleetEvent", FleetEvent);
  // Signed inside a JWS (POST /v1/deployments), so no route's schema names it: listed for clients that build manifests.
  app.openAPIRegistry.register("DeploymentManifest", DeploymentManifest);
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: { title: "wasmvisor control plane", version: API_VERSION, description: "Supervises WebAssembly on edge and IoT devices." },
  });

  // The interactive API reference; its script and styles are this Worker's own assets (public/).
  app.get("/docs", (c) => c.html(API_REFERENCE_PAGE));

  let methodsOf: ((path: string) => string[]) | undefined;
  app.notFound((c) => {
    methodsOf ??= allowedMethods(app.routes);
    const allowed = methodsOf(c.req.path);
    if (allowed.length === 0 || allowed.includes(c.req.method)) return problem(c, "not-found", `no route ${c.req.method} ${c.req.path}`);
    const res = problem(c, "method-not-allowed", `${c.req.path} takes ${allowed.join(", ")}, not ${c.req.method}`);
    res.headers.set("allow", allowed.join(", "));
    return res;
  });
  app.onError((err, c) => {
    if (err instanceof HTTPException && err.status < 500) {
      return problem(c, err.status === 415 ? "unsupported-media-type" : "validation", err.message);
    }
    log("error", "unhandled error", { requestId: c.get("requestId"), ...traceFields(c), path: c.req.path, error: String(err), stack: (err as Error)?.stack });
    return problem(c, "internal", "something went wrong on our side; the request id identifies it in the logs");
  });
  return app;
}
