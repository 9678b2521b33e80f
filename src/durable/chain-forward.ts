/**
 * Forwarding a chain step's output to the next step, from the control plane
 * (devices never reach each other, so chains work behind NAT). A primitive
 * result becomes the next function's first parameter; output files become its
 * input files (wasmiot's rules). A next step on a device here becomes a job on
 * that device with an id derived from this one, so a retried forward never
 * makes two; a next step outside is called over HTTP as a wasmiot supervisor
 * would.
 */
import type { Env } from "../worker/env.js";
import type { JobResult, NextLink } from "../protocol/job.js";
import { deviceStub } from "../worker/stubs.js";
import { sha256Hex } from "../core/crypto.js";
import { outputKey, type CallRecord } from "./job-row.js";

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** The next step's job id: the next device's id and 16 characters derived from this job's id. */
export async function chainJobId(nextDevice: string, jobId: string): Promise<string> {
  const hex = await sha256Hex(`chain:${jobId}`);
  let tail = "";
  for (let i = 0; i < 16; i++) tail += BASE32[parseInt(hex.slice(i * 2, i * 2 + 2), 16) & 31];
  return `${nextDevice}-${tail}`;
}

/** Throws when the next step could not be reached at all (the caller retries later). */
export async function forwardStep(env: Env, jobId: string, call: CallRecord, result: JobResult | null): Promise<NextLink> {
  const step = call.next!;
  const files = (result?.files ?? []).map((f) => ({ name: f.name, key: outputKey(jobId, f.name) }));
  const value = call.ctx.result === "none" ? null : (result?.value ?? null);
  if ("device" in step) {
    const nextJob = await chainJobId(step.device, jobId);
    const out = await deviceStub(env, step.device).call(nextJob, {
      deployment: step.deployment ?? call.ctx.deployment,
      module: step.module,
      function: step.function,
      method: "POST",
      query: {},
      body: {},
      files,
      prev: jobId,
      chained: { value, hasFiles: files.length > 0 },
    });
    if (!out.ok) return { error: `the next step ${step.module}/${step.function} on ${step.device} refused the call: ${out.detail}` };
    return { job: nextJob, ...(step.resultBase ? { url: `${step.resultBase.replace(/\/+$/, "")}/request-history/${nextJob}` } : {}) };
  }
  return forwardOverHttp(env, step, files, value);
}

async function forwardOverHttp(env: Env, step: { url: string; method: "get" | "post"; param?: string }, files: { name: string; key: string }[], value: unknown): Promise<NextLink> {
  const url = new URL(step.url);
  if (files.length === 0 && value !== null && value !== undefined) url.searchParams.set(step.param ?? "param0", String(value));
  let body: FormData | undefined;
  if (files.length > 0) {
    body = new FormData();
    for (const f of files) {
      const obj = await env.MODULES.get(f.key);
      if (obj) body.append(f.name, new Blob([await obj.arrayBuffer()]), f.name);
    }
  }
  let res: Response;
  try {
    res = await fetch(url, { method: files.length > 0 ? "POST" : step.method.toUpperCase(), ...(body ? { body } : {}), signal: AbortSignal.timeout(15_000) });
  } catch (e) {
    return { error: `the next step ${url.origin} could not be reached: ${String(e)}` };
  }
  const answer = (await res.json().catch(() => null)) as { resultUrl?: unknown } | null;
  if (!res.ok || typeof answer?.resultUrl !== "string") return { error: `the next step ${url.origin} answered ${res.status} without a resultUrl` };
  return { url: answer.resultUrl };
}
