/**
 * Turning a call of a deployed function into a job: its input files, its
 * arguments bound by name (or, for a chain step, from the previous step's
 * output) and what the job keeps about the call. Pure: the device object
 * stores what this decides.
 */
import { bindArguments, chainedRequest } from "../core/calls.js";
import { LIMITS, type JobSubmission } from "../protocol/job.js";
import type { CallRecord } from "./job-row.js";
import type { FunctionRef } from "./device-deployments.js";

/** A call of a deployed function, as the Worker (or a chain's previous step) hands it to the device object. */
export interface CallRequest {
  deployment: string;
  module: string;
  function: string;
  method: string;
  query: Record<string, string>;
  body: Record<string, unknown>;
  /** input files already stored by the control plane */
  files: { name: string; key: string }[];
  /** the previous chain step's job */
  prev: string | null;
  /** a chain step: the previous step's result (the files are in `files`) */
  chained?: { value: unknown; hasFiles: boolean };
}

/**
 * The job for a call, and why it cannot run if it cannot. A direct call with a
 * problem is refused (nothing stored); a chain step with one is still recorded,
 * as FAILED, so the chain shows where it broke.
 */
export function prepareCall(device: string, ref: FunctionRef, req: CallRequest): { submission: JobSubmission; call: CallRecord; problem: string | null } {
  const { part, digest, spec } = ref;
  const unexpected = req.files.find((f) => !spec.inputs.some((i) => i.name === f.name));
  const inputs = req.files.filter((f) => spec.inputs.some((i) => i.name === f.name));
  const { query, body } = req.chained ? chainedRequest(spec, req.chained.value, req.chained.hasFiles) : req;
  const missingFile = spec.inputs.find((i) => !inputs.some((f) => f.name === i.name));
  const bound = bindArguments(spec, query, body);
  const problem =
    unexpected && !req.prev ? `unexpected file ${unexpected.name}; this function takes ${spec.inputs.map((i) => i.name).join(", ") || "no files"}`
    : missingFile ? `missing input file ${missingFile.name} (send it as a multipart/form-data field)`
    : bound.ok ? null
    : bound.detail;
  const call: CallRecord = {
    ctx: { deployment: part.deployment, generation: part.generation, module: req.module, instance: spec.instance, inputs: inputs.map((f) => f.name), outputs: spec.outputs, result: spec.result },
    function: req.function,
    method: req.method,
    inputs,
    shown: bound.ok ? bound.shown : Object.fromEntries(Object.entries(query).map(([k, v]) => [k, String(v)])),
    next: spec.to,
    prev: req.prev,
  };
  const submission: JobSubmission = {
    device, module: digest, function: req.function, args: bound.ok ? bound.args : [], timeoutMs: spec.timeoutMs,
    maxAttempts: LIMITS.defaultMaxAttempts, priority: 0, start: problem === null,
  };
  return { submission, call, problem };
}
