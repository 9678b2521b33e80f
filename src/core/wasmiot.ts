/**
 * Reading a wasmiot manifest as our deployment: which functions each module
 * offers, their parameters (by name), files in and out, data files, and where
 * a chain goes next. Pure: the worker fetches what the URLs name.
 */
import type { FunctionSpec, NextStep } from "../protocol/deployment.js";
import type { WasmiotEndpoint, WasmiotHistoryEntry, WasmiotManifest } from "../protocol/wasmiot.js";

export interface PlannedModule {
  name: string;
  binaryUrl: string;
  functions: Record<string, FunctionSpec>;
  /** deployment-stage mounts: file name and where the control plane fetches it */
  mounts: { name: string; url: string }[];
}

/** A facade URL that names a device known here: its base (origin, or origin + /wasmiot/<id>) and the device. */
export type FacadeTarget = { device: string; base: string };
export type Resolve = (url: URL) => FacadeTarget | null;

const CALL_PATH = /^\/+([^/]+)\/modules\/([^/]+)\/([^/]+)\/?$/;

/** Splits `/<deployment>/modules/<module>/<function>`; null when the path is not a call route. */
export function parseCallPath(path: string): { deployment: string; module: string; function: string } | null {
  const m = CALL_PATH.exec(path);
  return m ? { deployment: decodeURIComponent(m[1]!), module: decodeURIComponent(m[2]!), function: decodeURIComponent(m[3]!) } : null;
}

const resultType = (e: WasmiotEndpoint): FunctionSpec["result"] => {
  if (!/json/i.test(e.response.media_type)) return "none";
  const t = e.response.schema?.type;
  return t === "integer" || t === "number" || t === "string" || t === "boolean" ? t : "none";
};

/** Where the next step of a chain goes: a device of ours (by its facade URL), or outside. */
export function nextStepOf(to: WasmiotEndpoint, resolve: Resolve): { ok: true; step: NextStep } | { ok: false; detail: string } {
  const url = new URL(to.path.replace(/^\/+/, "/"), to.url.endsWith("/") ? to.url : `${to.url}/`);
  const full = new URL(to.url.replace(/\/+$/, "") + "/" + to.path.replace(/^\/+/, ""));
  const target = resolve(full);
  if (!target) {
    const param = to.request.parameters[0]?.name;
    return { ok: true, step: { url: url.toString(), method: to.method, ...(param ? { param } : {}) } };
  }
  const call = parseCallPath(full.pathname.slice(new URL(target.base).pathname.replace(/\/+$/, "").length));
  if (!call) return { ok: false, detail: `the chain's next step ${full} is not a /<deployment>/modules/<module>/<function> route` };
  return { ok: true, step: { device: target.device, module: call.module, function: call.function, deployment: call.deployment, resultBase: target.base } };
}

/**
 * The modules of a wasmiot manifest with their functions. Every function an
 * endpoint describes becomes callable; instance lifetime is per deployment, as
 * the wasmiot supervisor keeps one instance per module per deployment.
 */
export function planWasmiot(m: WasmiotManifest, resolve: Resolve): { ok: true; modules: PlannedModule[] } | { ok: false; detail: string } {
  const modules: PlannedModule[] = [];
  for (const mod of m.modules) {
    const endpoints = m.endpoints[mod.name] ?? {};
    if (Object.keys(endpoints).length === 0) return { ok: false, detail: `module ${mod.name} has no endpoints` };
    const functions: Record<string, FunctionSpec> = {};
    const dataFiles = new Set<string>();
    for (const [fn, e] of Object.entries(endpoints)) {
      const mounts = m.mounts[mod.name]?.[fn] ?? { execution: [], deployment: [], output: [] };
      const to = m.instructions.modules[mod.name]?.[fn]?.to ?? null;
      let next: NextStep | null = null;
      if (to) {
        const step = nextStepOf(to, resolve);
        if (!step.ok) return step;
        next = step.step;
      }
      for (const d of mounts.deployment) dataFiles.add(d.path);
      functions[fn] = {
        params: e.request.parameters.map((p) => ({ name: p.name, type: p.schema.type, required: p.required, in: p.in === "body" ? "body" : "query" })),
        inputs: mounts.execution.map((x) => ({ name: x.path, mediaType: x.media_type })),
        result: resultType(e),
        outputs: mounts.output.map((x) => ({ name: x.path, mediaType: x.media_type })),
        instance: "deployment",
        timeoutMs: 60_000,
        to: next,
      };
    }
    const mountFiles: { name: string; url: string }[] = [];
    for (const name of dataFiles) {
      const url = mod.urls.other[name];
      if (!url) return { ok: false, detail: `deployment mount ${name} of module ${mod.name} has no file in urls.other` };
      mountFiles.push({ name, url });
    }
    modules.push({ name: mod.name, binaryUrl: mod.urls.binary, functions, mounts: mountFiles });
  }
  return { ok: true, modules };
}

/** The minimum of a call's job and record that a wasmiot history entry needs. */
export interface HistorySource {
  job: { id: string; state: string; createdAt: string; result: { value: unknown; files?: { name: string }[] } | null; error: { message: string } | null; next?: { job?: string; url?: string; error?: string } };
  call: { ctx: { deployment: string; module: string; result: string }; function: string; method: string; shown: Record<string, string>; inputs: { name: string }[]; next: unknown };
}

/**
 * A call as wasmiot's request-history shows it, or null while it is not done
 * (a chain step is done once it has handed its output on). A step that handed
 * on shows the next step's result URL, which is how wasmiot's orchestrator
 * follows a chain to its end.
 */
export function historyEntry(s: HistorySource, base: string): WasmiotHistoryEntry | null {
  const { job, call } = s;
  const done = ["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELED", "EXPIRED", "REJECTED"].includes(job.state);
  if (!done || (job.state === "SUCCEEDED" && call.next && !job.next)) return null;
  const entry = {
    request_id: job.id,
    deployment_id: call.ctx.deployment,
    module_name: call.ctx.module,
    function_name: call.function,
    method: call.method.toUpperCase(),
    request_args: call.shown,
    request_files: Object.fromEntries(call.inputs.map((f) => [f.name, f.name])),
    work_queued_at: new Date(job.createdAt).toUTCString(),
  };
  if (job.state !== "SUCCEEDED") return { ...entry, result: job.error?.message ?? job.state, success: false };
  if (job.next?.error) return { ...entry, result: job.next.error, success: false };
  const files = job.result?.files?.map((f) => f.name) ?? [];
  const nextUrl = job.next?.url ?? (job.next?.job ? `${base}/request-history/${job.next.job}` : null);
  const value = job.result?.value;
  const primitive = nextUrl ?? (call.ctx.result === "none" || value === null || value === undefined ? null : String(value));
  return { ...entry, result: [primitive, files.length > 0 ? files : null], success: true };
}
