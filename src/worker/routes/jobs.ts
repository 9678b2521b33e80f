import { z } from "zod";
import { deviceOfJob, JobId, newJobId } from "../../protocol/ids.js";
import { JobSubmission, JobView, LIMITS } from "../../protocol/job.js";
import { coerceArgs } from "../../protocol/wasm.js";
import { jsonBody, jsonResponse, route } from "../route.js";
import { fromOutcome, log, problem, type App, type Ctx } from "../http.js";
import { moduleInfo } from "../module-store.js";
import { deviceStub } from "../stubs.js";

const WaitQuery = z.object({ wait: z.coerce.number().min(0).max(LIMITS.maxWaitSeconds).default(0) });

const submit = route({
  method: "post",
  path: "/v1/jobs",
  roles: ["admin", "user"],
  summary: "Submit a job; answers 202 at once with its status and result URLs, or with ?wait= the ended job (200)",
  request: { body: jsonBody(JobSubmission), query: WaitQuery },
  responses: {
    202: jsonResponse(JobView, "Accepted and queued on the device (or still running when the wait ran out)"),
    200: jsonResponse(JobView, "With ?wait=: the job ended within the wait"),
  },
});

const idParam = z.object({ id: JobId });

const status = route({
  method: "get",
  path: "/v1/jobs/{id}",
  roles: ["admin", "user"],
  summary: "A job's state, attempts, result or error",
  request: { params: idParam },
  responses: { 200: jsonResponse(JobView, "The job") },
});

const result = route({
  method: "get",
  path: "/v1/jobs/{id}/result",
  roles: ["admin", "user"],
  summary: "The job once it has ended, waiting up to ?wait= seconds; 202 while it has not",
  request: {
    params: idParam,
    query: WaitQuery,
  },
  responses: { 200: jsonResponse(JobView, "The job has ended"), 202: jsonResponse(JobView, "Not yet; ask again") },
});

const cancel = route({
  method: "post",
  path: "/v1/jobs/{id}/cancel",
  roles: ["admin", "user"],
  summary: "Cancel a job that has not ended",
  request: { params: idParam },
  responses: { 200: jsonResponse(JobView, "Canceled") },
});

/** Checks the call against the module's real signature before anything is queued. */
async function checkCall(c: Ctx, spec: JobSubmission): Promise<Response | null> {
  const info = await moduleInfo(c.env, spec.module);
  if (!info) return problem(c, "unprocessable", `module ${spec.module} has not been uploaded (POST /v1/modules)`);
  const fn = info.exports.find((e) => e.kind === "function" && e.name === spec.function);
  if (!fn?.signature) {
    const names = info.exports.filter((e) => e.kind === "function").map((e) => e.name);
    return problem(c, "bad-arguments", `the module exports no function "${spec.function}" (it exports: ${names.join(", ") || "none"})`);
  }
  const args = coerceArgs(fn.signature, spec.args);
  return args.ok ? null : problem(c, "bad-arguments", `${spec.function}: ${args.message}`);
}

export function jobRoutes(app: App) {
  app.openapi(submit, async (c) => {
    const spec = c.req.valid("json");
    const refused = await checkCall(c, spec);
    if (refused) return refused;
    const jobId = newJobId(spec.device, Date.now());
    const waitMs = Math.round(c.req.valid("query").wait * 1000);
    const out = await deviceStub(c.env, spec.device).submit(jobId, spec, waitMs);
    return fromOutcome(c, out, ({ done, job }) => {
      log("info", "job queued", { requestId: c.get("requestId"), jobId, device: spec.device, function: spec.function });
      return c.json(job, done ? 200 : 202, { Location: job.links.self });
    });
  });

  app.openapi(status, async (c) => {
    const id = c.req.valid("param").id;
    return fromOutcome(c, await deviceStub(c.env, deviceOfJob(id)).getJob(id), (job) => c.json(job, 200));
  });

  app.openapi(result, async (c) => {
    const id = c.req.valid("param").id;
    const waitMs = Math.round(c.req.valid("query").wait * 1000);
    const out = await deviceStub(c.env, deviceOfJob(id)).awaitResult(id, waitMs);
    return fromOutcome(c, out, ({ done, job }) => (done ? c.json(job, 200) : c.json(job, 202, { "Retry-After": "1" })));
  });

  app.openapi(cancel, async (c) => {
    const id = c.req.valid("param").id;
    return fromOutcome(c, await deviceStub(c.env, deviceOfJob(id)).cancel(id), (job) => c.json(job, 200));
  });
}
