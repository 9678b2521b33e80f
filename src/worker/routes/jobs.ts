import { formatTraceparent } from "../../core/trace.js";
import { z } from "zod";
import { derivedJobId, deviceOfJob, JobId } from "../../protocol/ids.js";
import { JobBatch, JobLogs, JobRef, JobRequest, JobState, JobSubmission, JobView, LIMITS, type OfflinePolicy, type TracedSubmission } from "../../protocol/job.js";
import { DEFAULT_NAMESPACE } from "../../protocol/keys.js";
import type { Selector } from "../../protocol/selector.js";
import { noMatchProblem } from "../selector-problem.js";
import { placeBySelector } from "../../durable/fleet.js";
import { DeviceId } from "../../protocol/ids.js";
import { sha256Hex } from "../../core/crypto.js";
import type { ProblemType } from "../../protocol/problem.js";
import { coerceArgs, requiredInterfaces } from "../../protocol/wasm.js";
import { jsonBody, jsonResponse, problemResponse, route } from "../route.js";
import { annotate, type App, type Ctx, fromOutcome, problem } from "../http.js";
import { moduleInfo } from "../module-store.js";
import { callerNamespace, canSeeDevice, deviceNamespace } from "../tenancy.js";
import { mapWithConcurrency } from "../../core/concurrency.js";
import { mergePages } from "../../core/shards.js";

import type { Outcome } from "../../durable/rpc.js";

/** How many device objects one batch request talks to at once. */
const DEVICE_FANOUT = 32;
import { idempotencyWindowMs, signingRequired, verifySignedJob } from "../signing.js";
import { chainFrom } from "../chains.js";
import { FileName } from "../../protocol/deployment.js";
import { jobIndexShards, jobIndexStub, deviceStub } from "../../platform/stubs.js";
import { outputKey } from "../../platform/r2-keys.js";

const WaitQuery = z.object({ wait: z.coerce.number().min(0).max(LIMITS.maxWaitSeconds).default(0).meta({ type: "number", description: "seconds to wait for the job to end (0: answer at once)" }) });

const submit = route({
  method: "post",
  path: "/v1/jobs",
  problems: [404, 409, 422],
  roles: ["admin", "user"],
  summary: "Submit a job to a device, or with `selector` to the least-loaded healthy device that matches (422 naming each candidate's reasons when none does); answers 202 at once with its status and result URLs, or with ?wait= the ended job (200). `failover` says what happens if its device goes silent",
  request: {
    body: jsonBody(JobRequest),
    query: WaitQuery,
    headers: z.object({ "idempotency-key": z.string().min(1).max(200).optional() }),
  },
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

const signed = route({
  method: "post",
  path: "/v1/jobs/signed",
  problems: [404, 409, 422],
  roles: ["admin", "user"],
  summary: "Submit a job signed by a registered orchestrator key: a compact JWT (EdDSA or ES256, kid in the header) whose `job` claim is the submission; exp, iat and jti are required and a jti is accepted once",
  request: {
    body: { required: true, content: { "application/jose": { schema: z.string().meta({ description: "compact JWS" }) }, "application/jwt": { schema: z.string().meta({ description: "compact JWS" }) } } },
    query: WaitQuery,
  },
  responses: {
    202: jsonResponse(JobView, "Accepted and queued"),
    200: jsonResponse(JobView, "With ?wait=: the job ended within the wait"),
  },
});


const batch = route({
  method: "post",
  path: "/v1/jobs/batch",
  roles: ["admin", "user"],
  summary:
    `Submit up to ${LIMITS.maxBatchJobs} jobs at once. Every job is checked before any is stored (a refusal stores nothing); ` +
    "each device's share is stored in one transaction. With an Idempotency-Key, the job ids follow from the key, a repeat answers " +
    "the same jobs (Idempotent-Replayed: true) and completes a batch that failed part-way; the key with another body is a 409",
  request: {
    body: jsonBody(JobBatch),
    headers: z.object({ "idempotency-key": z.string().min(1).max(200).optional() }),
  },
  responses: {
    202: jsonResponse(z.object({ jobs: z.array(JobRef) }), "Accepted, in the order given"),
    404: problemResponse("A device is not registered; nothing was stored"),
    409: problemResponse("This Idempotency-Key was used with a different batch; nothing was stored"),
    422: problemResponse("A job cannot be accepted, e.g. its deadline has passed (nothing was stored), or a device refused its share late: the detail says how many devices stored theirs, and a retry with the same Idempotency-Key completes the batch"),
  },
});

const outputFile = route({
  method: "get",
  path: "/v1/jobs/{id}/outputs/{name}",
  roles: ["admin", "user"],
  summary: "An output file a call wrote: one URL per job and file, never overwritten by a later run",
  request: { params: z.object({ id: JobId, name: FileName }) },
  responses: { 200: { description: "The file, with the media type its deployment declares", content: { "application/octet-stream": { schema: z.string().meta({ format: "binary" }) } } } },
});

const start = route({
  method: "post",
  path: "/v1/jobs/{id}/start",
  problems: [409],
  roles: ["admin", "user"],
  summary: "Queue a job that was created with start: false",
  request: { params: z.object({ id: JobId }) },
  responses: { 200: jsonResponse(JobView, "Queued") },
});

const remove = route({
  method: "delete",
  path: "/v1/jobs/{id}",
  problems: [409],
  roles: ["admin", "user"],
  summary: "Delete an ended job with its result and logs",
  request: { params: z.object({ id: JobId }) },
  responses: { 200: jsonResponse(z.object({ id: JobId }), "Deleted") },
});

const JobListItem = z.object({
  id: JobId, device: DeviceId, state: JobState, function: z.string(), module: z.string(), createdAt: z.string(), updatedAt: z.string(),
});

/** Cursors are opaque to clients: base64url of "<createdAt>.<id>". */
const encodeCursor = (c: { createdAt: number; id: string }) => btoa(`${c.createdAt}.${c.id}`).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
function decodeCursor(s: string): { createdAt: number; id: string } | null {
  try {
    const [t, id] = atob(s.replace(/-/g, "+").replace(/_/g, "/")).split(".");
    return Number.isSafeInteger(Number(t)) && id && JobId.safeParse(id).success ? { createdAt: Number(t), id } : null;
  } catch {
    return null;
  }
}

const list = route({
  method: "get",
  path: "/v1/jobs",
  roles: ["admin", "user"],
  summary: "List jobs in creation order from the job index (it may lag a job's own state by a few tens of milliseconds)",
  request: {
    query: z.object({
      device: DeviceId.optional(),
      status: JobState.optional(),
      limit: z.coerce.number().int().min(1).max(500).default(100),
      cursor: z.string().max(200).optional(),
    }),
  },
  responses: { 200: jsonResponse(z.object({ jobs: z.array(JobListItem), nextCursor: z.string().nullable() }), "A page of jobs") },
});

const logs = route({
  method: "get",
  path: "/v1/jobs/{id}/logs",
  roles: ["admin", "user"],
  summary: "The job's output lines with timestamps; ?follow=1 streams them (server-sent events) until the job ends",
  request: { params: z.object({ id: JobId }), query: z.object({ follow: z.enum(["0", "1", "true", "false"]).optional() }) },
  responses: {
    200: {
      description: "The lines so far (JSON), or an event stream: `line` events, then one `end` event",
      content: { "application/json": { schema: JobLogs }, "text/event-stream": { schema: z.string() } },
    },
  },
});

const cancel = route({
  method: "post",
  path: "/v1/jobs/{id}/cancel",
  problems: [409],
  roles: ["admin", "user"],
  summary: "Cancel a job that has not ended",
  request: { params: idParam },
  responses: { 200: jsonResponse(JobView, "Canceled") },
});

type Refusal = { type: ProblemType; detail: string };

/** Checks the call against the module's real signature before anything is queued; answers the host functions it needs. */
export async function checkCall(c: Ctx, spec: JobSubmission): Promise<Refusal | { requires: string[] }> {
  const info = await moduleInfo(c.env, spec.module);
  if (!info) return { type: "unprocessable", detail: `module ${spec.module} has not been uploaded (POST /v1/modules)` };
  const fn = info.exports.find((e) => e.kind === "function" && e.name === spec.function);
  if (!fn?.signature) {
    const names = info.exports.filter((e) => e.kind === "function").map((e) => e.name);
    return { type: "bad-arguments", detail: `the module exports no function "${spec.function}" (it exports: ${names.join(", ") || "none"})` };
  }
  const args = coerceArgs(fn.signature, spec.args);
  return args.ok ? { requires: requiredInterfaces(info.imports) } : { type: "bad-arguments", detail: `${spec.function}: ${args.message}` };
}

/**
 * Binds the key to this body for the caller's namespace (in the index shard the key
 * hashes to) and answers what the batch's job ids are derived from (with their position).
 */
async function claimBatchKey(c: Ctx, key: string, jobs: JobSubmission[]) {
  const namespace = callerNamespace(c);
  const scope = `${namespace ?? "*"}\n${key}`;
  const bodyHash = await sha256Hex(JSON.stringify(jobs));
  const claim = await jobIndexStub(c.env, scope).claimBatchKey(scope, bodyHash, await idempotencyWindowMs(c.env, namespace));
  // The body is part of the ids too: a key reused for another batch after its window names new jobs.
  return { scope: `${scope}\n${bodyHash}`, claim };
}

export function jobRoutes(app: App) {
  /** Everything after authentication, shared by signed and unsigned submissions. */
  async function queue(c: Ctx, spec: JobSubmission, waitMs: number, idempotencyKey: string | undefined, failover: (OfflinePolicy & { selector: Selector | null }) | null = null, known?: string[]) {
    if (!(await canSeeDevice(c, spec.device))) return problem(c, "not-found", `device ${spec.device} is not registered`);
    const checked = known ? { requires: known } : await checkCall(c, spec);
    if ("type" in checked) return problem(c, checked.type, checked.detail);
    const idempotency = idempotencyKey ? { key: idempotencyKey, bodyHash: await sha256Hex(JSON.stringify(spec)) } : null;
    // The device object mints the job's id: only it knows every id its device's jobs hold.
    const out = await deviceStub(c.env, spec.device).submit(callerNamespace(c), { ...spec, traceparent: formatTraceparent(c.get("trace")) }, waitMs, idempotency, checked.requires, failover ? JSON.stringify(failover) : null);
    return fromOutcome(c, out, ({ done, job, replayed }) => {
      annotate(c, { event: replayed ? "job replayed" : "job queued", jobId: job.id, device: spec.device, function: spec.function });
      return c.json(job, done ? 200 : 202, { Location: job.links.self, ...(replayed ? { "Idempotent-Replayed": "true" } : {}) });
    });
  }

  /** Unsigned submissions are refused where the device's namespace (or the deployment) requires signatures. */
  async function mustBeSigned(c: Ctx, deviceId: string): Promise<boolean> {
    const ns = await deviceNamespace(c, deviceId);
    return ns !== null && (await signingRequired(c.env, ns));
  }

  app.openapi(submit, async (c) => {
    const { selector, failover, ...rest } = c.req.valid("json");
    let spec: JobSubmission;
    let requires: string[] | undefined;
    if (selector) {
      const namespace = callerNamespace(c) ?? DEFAULT_NAMESPACE;
      if (await signingRequired(c.env, namespace)) return problem(c, "signature-required", "this namespace accepts only signed jobs: POST /v1/jobs/signed");
      const checked = await checkCall(c, { ...rest, device: "selector" } as JobSubmission);
      if ("type" in checked) return problem(c, checked.type, checked.detail);
      requires = checked.requires;
      const placed = await placeBySelector(c.env, namespace, selector, requires);
      if (!placed.ok) return noMatchProblem(c, placed.misses, "no healthy device matches the selector");
      annotate(c, { selected: placed.device });
      spec = { ...rest, device: placed.device };
    } else {
      spec = { ...rest, device: rest.device! };
      if (await mustBeSigned(c, spec.device)) return problem(c, "signature-required", "this device's namespace accepts only signed jobs: POST /v1/jobs/signed");
    }
    const policy = failover && failover.onOffline !== "wait" ? { ...failover, selector: selector ?? null } : null;
    return queue(c, spec, Math.round(c.req.valid("query").wait * 1000), c.req.valid("header")["idempotency-key"], policy, requires);
  });

  app.openapi(signed, async (c) => {
    const verified = await verifySignedJob(c.env, (await c.req.text()).trim());
    if (!verified.ok) return problem(c, verified.problem, verified.detail);
    const ns = await deviceNamespace(c, verified.job.device);
    if (verified.keyNamespace !== null && ns !== null && ns !== verified.keyNamespace) {
      return problem(c, "forbidden", `orchestrator key ${verified.kid} signs only for namespace ${verified.keyNamespace}`);
    }
    return queue(c, verified.job, Math.round(c.req.valid("query").wait * 1000), undefined);
  });

  app.openapi(batch, async (c) => {
    const { jobs } = c.req.valid("json");
    const key = c.req.valid("header")["idempotency-key"];
    const requires: string[][] = [];
    const checkedAt = Date.now();
    for (const [i, spec] of jobs.entries()) {
      if (spec.deadline && Date.parse(spec.deadline) <= checkedAt) return problem(c, "unprocessable", `jobs.${i}: the deadline has already passed`);
      const checked = await checkCall(c, spec);
      if ("type" in checked) return problem(c, checked.type, `jobs.${i}: ${checked.detail}`);
      requires.push(checked.requires);
    }
    // All or nothing: every device must exist before any job is stored.
    const devices = [...new Set(jobs.map((j) => j.device))];
    const signed = await mapWithConcurrency(devices, DEVICE_FANOUT, (d) => mustBeSigned(c, d));
    const needsSignature = devices.find((_, i) => signed[i]);
    if (needsSignature) return problem(c, "signature-required", `device ${needsSignature}'s namespace accepts only signed jobs: POST /v1/jobs/signed`);
    // One hop per device: the object answers for the caller's namespace itself (a device the Worker
    // has not seen before would otherwise cost a second hop for its namespace first).
    const me = c.get("principal");
    const known = await mapWithConcurrency(devices, DEVICE_FANOUT, async (d) => (me.role !== "device" || me.deviceId === d) && (await deviceStub(c.env, d).exists(callerNamespace(c))));
    const unknown = devices.filter((_, i) => !known[i]);
    if (unknown.length) return problem(c, "not-found", `not registered: ${unknown.join(", ")}`);
    const keyed = key ? await claimBatchKey(c, key, jobs) : null;
    if (keyed?.claim === "conflict") return problem(c, "conflict", "this Idempotency-Key was used with a different batch");
    // With a key, ids follow from it (a retry names the same jobs); without one, each device object mints its jobs' ids.
    const ids = keyed ? await Promise.all(jobs.map(async (spec, i) => derivedJobId(spec.device, await sha256Hex(`${keyed.scope}\n${i}`)))) : null;
    const traceparent = formatTraceparent(c.get("trace"));
    const byDevice = new Map<string, { at: number; jobId?: string; spec: TracedSubmission; requires: string[] }[]>();
    for (const [at, spec] of jobs.entries()) {
      byDevice.set(spec.device, [...(byDevice.get(spec.device) ?? []), { at, ...(ids ? { jobId: ids[at]! } : {}), spec: { ...spec, traceparent }, requires: requires[at]! }]);
    }
    const outs = await mapWithConcurrency([...byDevice], DEVICE_FANOUT, async ([device, mine]): Promise<Outcome<JobRef[]>> => {
      const out = await deviceStub(c.env, device).submitBatch(callerNamespace(c), mine.map(({ at: _at, ...entry }) => entry));
      return out.ok ? { ok: true, value: out.value } : { ok: false, problem: out.problem, detail: out.detail };
    });
    const failed = outs.findIndex((out) => !out.ok);
    if (failed >= 0) {
      // Every job was checked above, so this is a device refusing late (or a fault): the other
      // devices' shares may be stored. With the key, a retry names the same jobs and completes it.
      const out = outs[failed] as { ok: false; problem: ProblemType; detail: string };
      const stored = [...byDevice.keys()].filter((_, i) => outs[i]!.ok);
      const advice = key ? "retry with the same Idempotency-Key to complete the batch" : "without an Idempotency-Key a retry would store them again";
      return problem(c, out.problem, `device ${[...byDevice.keys()][failed]}: ${out.detail}; stored on ${stored.length} of ${byDevice.size} devices (${advice})`);
    }
    // Each device answers its refs in the order it was given; put them back in the request's order.
    const refs: JobRef[] = new Array(jobs.length);
    for (const [i, out] of outs.entries()) {
      const mine = [...byDevice.values()][i]!;
      if (out.ok) for (const [k, ref] of out.value.entries()) refs[mine[k]!.at] = ref;
    }
    annotate(c, { event: keyed?.claim === "replay" ? "jobs replayed" : "jobs queued", count: jobs.length, devices: devices.length });
    return c.json({ jobs: refs }, 202, keyed?.claim === "replay" ? { "Idempotent-Replayed": "true" } : {});
  });

  app.openapi(list, async (c) => {
    const q = c.req.valid("query");
    const after = q.cursor ? decodeCursor(q.cursor) : null;
    if (q.cursor && !after) return problem(c, "validation", "the cursor is not one this API handed out");
    const query = { namespace: callerNamespace(c), device: q.device ?? null, status: q.status ?? null, limit: q.limit, after };
    // Every shard answers the rows past the same cursor; the page is the first `limit` of their union.
    // A device's jobs all live in one shard.
    const asked = q.device ? [jobIndexStub(c.env, q.device)] : jobIndexShards(c.env);
    const shards = await Promise.all(asked.map((shard) => shard.list(query)));
    const byCreation = (a: { createdAtMs: number; id: string }, b: { createdAtMs: number; id: string }) =>
      a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    const { rows, more } = mergePages(shards, byCreation, q.limit);
    const last = rows[rows.length - 1];
    return c.json({
      jobs: rows.map(({ createdAtMs: _ms, ...job }) => job),
      nextCursor: more && last ? encodeCursor({ createdAt: last.createdAtMs, id: last.id }) : null,
    }, 200);
  });

  app.openapi(logs, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, deviceOfJob(id)))) return problem(c, "not-found", `no job ${id}`);
    const follow = ["1", "true"].includes(c.req.valid("query").follow ?? "");
    const stub = deviceStub(c.env, deviceOfJob(id));
    if (!follow) return fromOutcome(c, await stub.logs(callerNamespace(c), id), (l) => c.json(l, 200));
    return fromOutcome(c, await stub.followLogs(callerNamespace(c), id), (stream) =>
      new Response(stream, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } }),
    );
  });

  app.openapi(start, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, deviceOfJob(id)))) return problem(c, "not-found", `no job ${id}`);
    return fromOutcome(c, await deviceStub(c.env, deviceOfJob(id)).start(callerNamespace(c), id), (job) => c.json(job, 200));
  });

  app.openapi(remove, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, deviceOfJob(id)))) return problem(c, "not-found", `no job ${id}`);
    return fromOutcome(c, await deviceStub(c.env, deviceOfJob(id)).remove(callerNamespace(c), id), (r) => c.json(r, 200));
  });

  app.openapi(status, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, deviceOfJob(id)))) return problem(c, "not-found", `no job ${id}`);
    const out = await deviceStub(c.env, deviceOfJob(id)).getJob(callerNamespace(c), id);
    if (!out.ok) return problem(c, out.problem, out.detail);
    const job = out.value;
    // The first step of a chain shows every step.
    if (job.call?.hasNext && !job.call.prev) job.chain = await chainFrom(c.env, callerNamespace(c), job);
    return c.json(job, 200);
  });

  app.openapi(outputFile, async (c) => {
    const { id, name } = c.req.valid("param");
    if (!(await canSeeDevice(c, deviceOfJob(id)))) return problem(c, "not-found", `no job ${id}`);
    const out = await deviceStub(c.env, deviceOfJob(id)).getJob(callerNamespace(c), id);
    const file = out.ok ? out.value.outputs?.find((f) => f.name === name) : undefined;
    if (!file) return problem(c, "not-found", `job ${id} has no output file ${name}`);
    const obj = await c.env.MODULES.get(outputKey(id, name));
    if (!obj) return problem(c, "not-found", `the output file ${name} of job ${id} is gone`);
    return new Response(obj.body, { headers: { "content-type": file.mediaType, "content-length": String(obj.size), "cache-control": "private, max-age=31536000, immutable" } });
  });

  app.openapi(result, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, deviceOfJob(id)))) return problem(c, "not-found", `no job ${id}`);
    const waitMs = Math.round(c.req.valid("query").wait * 1000);
    const out = await deviceStub(c.env, deviceOfJob(id)).awaitResult(callerNamespace(c), id, waitMs);
    return fromOutcome(c, out, ({ done, job }) => (done ? c.json(job, 200) : c.json(job, 202, { "Retry-After": "1" })));
  });

  app.openapi(cancel, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, deviceOfJob(id)))) return problem(c, "not-found", `no job ${id}`);
    return fromOutcome(c, await deviceStub(c.env, deviceOfJob(id)).cancel(callerNamespace(c), id), (job) => c.json(job, 200));
  });
}
