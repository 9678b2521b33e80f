/**
 * What an RPC method answers. Exceptions lose their type across RPC, so
 * expected failures travel as values the Worker turns into problem+json.
 */
import type { ProblemType } from "../protocol/problem.js";

export type Outcome<T> = { ok: true; value: T } | { ok: false; problem: ProblemType; detail: string };

export const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
export const fail = <T = never>(problem: ProblemType, detail: string): Outcome<T> => ({ ok: false, problem, detail });
