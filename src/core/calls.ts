/**
 * Calling a deployed function: binding a request's parameters to the
 * function's arguments by name, and the rules of chains. Pure, so tests
 * can call them without a runtime.
 */
import type { Arg } from "../protocol/wasm.js";
import type { DeploymentState, FunctionSpec, Param } from "../protocol/deployment.js";

export type Bound = { ok: true; args: Arg[]; shown: Record<string, string> } | { ok: false; param: string; detail: string };

const INTEGER = /^[+-]?\d{1,20}$/;
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** One parameter's value, typed as its description says. */
export function typeValue(param: Param, raw: unknown): { ok: true; arg: Arg } | { ok: false; detail: string } {
  const text = typeof raw === "string" ? raw.trim() : raw;
  switch (param.type) {
    case "integer": {
      if (typeof text === "number" && Number.isInteger(text)) return { ok: true, arg: text };
      if (typeof text === "string" && INTEGER.test(text)) {
        const n = Number(text);
        // Beyond 2^53 the decimal string travels as is (an i64 takes it exactly).
        return { ok: true, arg: Number.isSafeInteger(n) ? n : text.replace(/^\+/, "") };
      }
      return { ok: false, detail: `parameter ${param.name} must be an integer` };
    }
    case "number": {
      if (typeof text === "number" && Number.isFinite(text)) return { ok: true, arg: text };
      if (typeof text === "string" && NUMBER.test(text)) return { ok: true, arg: Number(text) };
      return { ok: false, detail: `parameter ${param.name} must be a number` };
    }
    case "boolean": {
      if (typeof text === "boolean") return { ok: true, arg: text };
      if (text === "true" || text === "1") return { ok: true, arg: true };
      if (text === "false" || text === "0") return { ok: true, arg: false };
      return { ok: false, detail: `parameter ${param.name} must be true or false` };
    }
    case "string":
      if (typeof text === "string" && text.length <= 64) return { ok: true, arg: text };
      return { ok: false, detail: `parameter ${param.name} must be a string of at most 64 characters` };
  }
}

/**
 * Arguments in the order the function declares its parameters, each taken by
 * name from where its description says (query string or body). Unknown names
 * are refused, so a typo is not silently ignored. An optional parameter left
 * out ends the argument list: Wasm has no holes in a call.
 */
export function bindArguments(spec: FunctionSpec, query: Record<string, string>, body: Record<string, unknown>): Bound {
  const known = new Set(spec.params.map((p) => p.name));
  for (const name of [...Object.keys(query), ...Object.keys(body)]) {
    if (!known.has(name)) return { ok: false, param: name, detail: `unknown parameter ${name}; this function takes ${spec.params.map((p) => p.name).join(", ") || "none"}` };
  }
  const args: Arg[] = [];
  const shown: Record<string, string> = {};
  let ended: string | null = null;
  for (const p of spec.params) {
    const raw = p.in === "query" ? query[p.name] : body[p.name];
    if (raw === undefined || raw === "") {
      if (p.required) return { ok: false, param: p.name, detail: `missing required parameter ${p.name} (${p.type}, in ${p.in})` };
      ended ??= p.name;
      continue;
    }
    if (ended) return { ok: false, param: p.name, detail: `parameter ${p.name} is given but the optional ${ended} before it is not` };
    const typed = typeValue(p, raw);
    if (!typed.ok) return { ok: false, param: p.name, detail: typed.detail };
    args.push(typed.arg);
    shown[p.name] = String(raw);
  }
  return { ok: true, args, shown };
}

/**
 * wasmiot's forwarding rule: a primitive result becomes the next function's
 * first parameter (by position); output files become its input files and pass
 * no primitive.
 */
export function chainedRequest(next: FunctionSpec, value: unknown, hasFiles: boolean): { query: Record<string, string>; body: Record<string, unknown> } {
  const first = next.params[0];
  if (hasFiles || value === null || value === undefined || !first) return { query: {}, body: {} };
  const text = String(value);
  return first.in === "query" ? { query: { [first.name]: text }, body: {} } : { query: {}, body: { [first.name]: value } };
}

/** A deployment is active when every device is, failed when any is, else pending. */
export function overallState(states: readonly DeploymentState[]): DeploymentState {
  if (states.includes("failed")) return "failed";
  if (states.length > 0 && states.every((s) => s === "active")) return "active";
  return states.includes("applying") ? "applying" : "pending";
}

/** The device a call goes to: the first online one that holds the module, else the first. */
export function chooseDevice(holders: readonly { id: string; online: boolean }[]): string | null {
  return (holders.find((h) => h.online) ?? holders[0])?.id ?? null;
}

/** The chain's state from its steps' job states (a step without a job yet is running). */
export function chainState(steps: readonly string[], complete: boolean): "running" | "succeeded" | "failed" {
  const bad = new Set(["FAILED", "TIMED_OUT", "CANCELED", "EXPIRED", "REJECTED", "ERROR"]);
  if (steps.some((s) => bad.has(s))) return "failed";
  return complete && steps.at(-1) === "SUCCEEDED" ? "succeeded" : "running";
}
