/**
 * Placing a call of a deployed function on a device: parameters from the query
 * string and the body (JSON, or the fields of a multipart form), files of a
 * multipart form stored as the job's input files. The device object checks
 * them against the function's description; if it refuses, the stored files go.
 */
import { JobIdMinter } from "../protocol/ids.js";
import { DEPLOYMENT_LIMITS, FileName } from "../protocol/deployment.js";
import type { JobView } from "../protocol/job.js";
import { fail, type Outcome } from "../durable/rpc.js";
import type { Ctx } from "./http.js";
import { inputKey } from "../platform/r2-keys.js";
import { deviceStub } from "../platform/stubs.js";

/** `namespace`: the caller's (null: a key spanning all); the device object refuses a call from another tenant. */
export type CallTarget = { namespace: string | null; device: string; deployment: string; module: string; function: string };

async function readBody(c: Ctx, jobId: string): Promise<Outcome<{ body: Record<string, unknown>; files: { name: string; key: string; bytes: Uint8Array }[] }>> {
  const type = c.req.header("content-type") ?? "";
  if (c.req.method !== "POST" || !c.req.raw.body) return { ok: true, value: { body: {}, files: [] } };
  if (/^application\/json\b/i.test(type)) {
    const json = (await c.req.json().catch(() => undefined)) as unknown;
    if (json === undefined || json === null || typeof json !== "object" || Array.isArray(json)) return fail("validation", "a JSON body must be an object of named parameters");
    return { ok: true, value: { body: json as Record<string, unknown>, files: [] } };
  }
  if (/^multipart\/form-data\b/i.test(type)) {
    let form: FormData;
    try {
      form = await c.req.formData();
    } catch {
      return fail("validation", "the multipart/form-data body could not be read");
    }
    const body: Record<string, unknown> = {};
    const files: { name: string; key: string; bytes: Uint8Array }[] = [];
    for (const [field, value] of form.entries()) {
      if (typeof value === "string") {
        body[field] = value;
        continue;
      }
      if (!FileName.safeParse(field).success) return fail("validation", `file field ${JSON.stringify(field)} is not a plain file name`);
      const bytes = new Uint8Array(await (value as Blob).arrayBuffer());
      if (bytes.length > DEPLOYMENT_LIMITS.maxInputFileBytes) return fail("too-large", `file ${field} is over the ${DEPLOYMENT_LIMITS.maxInputFileBytes}-byte limit`);
      files.push({ name: field, key: inputKey(jobId, field), bytes });
    }
    if (files.length > DEPLOYMENT_LIMITS.maxFiles) return fail("validation", `at most ${DEPLOYMENT_LIMITS.maxFiles} files per call`);
    return { ok: true, value: { body, files } };
  }
  return { ok: true, value: { body: {}, files: [] } };
}

/**
 * A call's id is minted here, before the device object sees it, because its input files are
 * stored under it first; one minter per isolate never repeats an id (see JobIdMinter).
 */
const callIds = new JobIdMinter();

/** Queues the call on the device; with `waitMs`, also waits for it to end. */
export async function placeCall(c: Ctx, target: CallTarget, query: Record<string, string>, waitMs = 0): Promise<Outcome<{ done: boolean; job: JobView }>> {
  const jobId = callIds.next(target.device, Date.now());
  const read = await readBody(c, jobId);
  if (!read.ok) return read;
  const { body, files } = read.value;
  await Promise.all(files.map((f) => c.env.MODULES.put(f.key, f.bytes)));
  const out = await deviceStub(c.env, target.device).call(target.namespace, jobId, {
    deployment: target.deployment,
    module: target.module,
    function: target.function,
    method: c.req.method,
    query: { ...query }, // a plain object: RPC cannot carry a null-prototype one
    body,
    files: files.map((f) => ({ name: f.name, key: f.key })),
    prev: null,
  }, waitMs);
  // Nothing half-applied: a refused call leaves no files behind.
  if (!out.ok && files.length > 0) await c.env.MODULES.delete(files.map((f) => f.key));
  return out;
}
