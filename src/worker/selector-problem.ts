/**
 * The one answer for "a selector matched no usable device": 422 problem+json whose
 * `candidates` names up to MAX_REASONS_SHOWN devices with every reason each was passed
 * over (`more` counts the rest). Jobs, deployments, rollouts and services answer with it.
 */
import { explainMisses } from "../core/selector.js";
import { MAX_REASONS_SHOWN, type SelectorMiss } from "../protocol/selector.js";
import { problem, type Ctx } from "./http.js";

export function noMatchProblem(c: Ctx, misses: readonly SelectorMiss[], what = "no device matches the selector") {
  return problem(c, "unprocessable", `${what}: ${explainMisses(misses, MAX_REASONS_SHOWN)}`, {
    candidates: misses.slice(0, MAX_REASONS_SHOWN),
    ...(misses.length > MAX_REASONS_SHOWN ? { more: misses.length - MAX_REASONS_SHOWN } : {}),
  });
}
