/**
 * Files between the control plane and an agent: a deployment's data files,
 * a call's input files, and the output files a call wrote. Each is checked
 * by the device's own object: an agent reaches only its own device's files.
 */
import { z } from "zod";
import { AppliedReport, DeploymentId, DesiredDeployments, DEPLOYMENT_LIMITS, FileName } from "../../protocol/deployment.js";
import { deviceOfJob, JobId, Sha256Hex } from "../../protocol/ids.js";
import { jsonBody, jsonResponse, route } from "../route.js";
import { fromOutcome, problem, type App, type Ctx } from "../http.js";
import { devicePrincipal } from "../auth.js";
import { dataKey, outputKey } from "../../platform/r2-keys.js";
import { deviceStub } from "../../platform/stubs.js";
import { EPOCH_HEADER, EpochHeaders } from "../../protocol/agent.js";

const binary = (description: string) => ({ description, content: { "application/octet-stream": { schema: z.string().meta({ format: "binary" }) } } });

const desired = route({
  method: "get",
  path: "/v1/agent/deployments",
  roles: ["device"],
  summary: "The deployments this device must hold (its desired state) and their version",
  problems: [409],
  request: { headers: EpochHeaders },
  responses: { 200: jsonResponse(DesiredDeployments, "Desired state") },
});

const applied = route({
  method: "post",
  path: "/v1/agent/deployments/status",
  roles: ["device"],
  summary: "Report deployments applied (active) or failed, with a reason",
  problems: [409],
  request: { headers: EpochHeaders, body: jsonBody(AppliedReport) },
  responses: { 200: jsonResponse(z.object({ updated: z.number().int() }), "Recorded") },
});

const dataFile = route({
  method: "get",
  path: "/v1/agent/deployments/{id}/data/{digest}",
  roles: ["device"],
  summary: "A data file of a deployment this device holds (agents verify the sha256)",
  request: { params: z.object({ id: DeploymentId, digest: Sha256Hex }) },
  responses: { 200: binary("The file") },
});

const jobFile = z.object({ id: JobId, name: FileName });

const inputFile = route({
  method: "get",
  path: "/v1/agent/jobs/{id}/inputs/{name}",
  roles: ["device"],
  summary: "An input file of a call leased to this device",
  problems: [409],
  request: { params: jobFile, headers: EpochHeaders },
  responses: { 200: binary("The file") },
});

const outputFile = route({
  method: "put",
  path: "/v1/agent/jobs/{id}/outputs/{name}",
  problems: [409],
  roles: ["device"],
  summary: "Upload an output file of a call this device holds the lease of (before reporting its result)",
  request: {
    params: jobFile,
    headers: EpochHeaders.extend({ "x-lease-token": z.string().min(1).max(64) }),
    body: { required: true, content: { "application/octet-stream": { schema: z.string().meta({ format: "binary" }) } } },
  },
  responses: { 204: { description: "Stored" } },
});

const caller = (c: Ctx) => {
  const p = devicePrincipal(c.get("principal"))!;
  // The session's epoch (fencing); validated by each route's header schema.
  return { stub: deviceStub(c.env, p.deviceId), secret: p.secret, deviceId: p.deviceId, epoch: Number(c.req.header(EPOCH_HEADER) ?? 0) };
};

async function serve(c: Ctx, key: string, type = "application/octet-stream") {
  const obj = await c.env.MODULES.get(key);
  if (!obj) return problem(c, "not-found", "the file is gone");
  return new Response(obj.body, { headers: { "content-type": type, "content-length": String(obj.size) } });
}

export function agentFileRoutes(app: App) {
  app.openapi(desired, async (c) => {
    const { stub, secret, epoch } = caller(c);
    return fromOutcome(c, await stub.desiredDeployments(secret, epoch), (d) => c.json(d, 200));
  });
  app.openapi(applied, async (c) => {
    const { stub, secret, epoch } = caller(c);
    return fromOutcome(c, await stub.reportDeployments(secret, c.req.valid("json").states, epoch), (r) => c.json(r, 200));
  });
  app.openapi(dataFile, async (c) => {
    const { stub, secret } = caller(c);
    const { id, digest } = c.req.valid("param");
    if (!(await stub.mayReadDataFile(secret, id, digest))) return problem(c, "not-found", `deployment ${id} on this device has no data file ${digest}`);
    return serve(c, dataKey(digest));
  });
  app.openapi(inputFile, async (c) => {
    const { stub, secret, deviceId, epoch } = caller(c);
    const { id, name } = c.req.valid("param");
    if (deviceOfJob(id) !== deviceId) return problem(c, "not-found", `no job ${id}`);
    const key = await stub.inputFileKey(secret, id, name, epoch);
    return key.ok ? serve(c, key.value) : problem(c, key.problem, key.detail);
  });
  app.openapi(outputFile, async (c) => {
    const { stub, secret, deviceId, epoch } = caller(c);
    const { id, name } = c.req.valid("param");
    if (deviceOfJob(id) !== deviceId) return problem(c, "not-found", `no job ${id}`);
    const may = await stub.mayWriteOutput(secret, id, c.req.valid("header")["x-lease-token"], name, epoch);
    if (!may.ok) return problem(c, may.problem, may.detail);
    const bytes = await c.req.arrayBuffer();
    if (bytes.byteLength > DEPLOYMENT_LIMITS.maxOutputFileBytes) return problem(c, "too-large", `output files are limited to ${DEPLOYMENT_LIMITS.maxOutputFileBytes} bytes`);
    await c.env.MODULES.put(outputKey(id, name), bytes);
    return c.body(null, 204);
  });
}
