/** The Hono app type, problem+json answers and structured logs shared by every route. */
import type { Context } from "hono";
import { OpenAPIHono } from "@hono/zod-openapi";
import { formatTraceparent } from "../core/trace.js";
import { makeProblem, zodErrors, type Problem, type ProblemType } from "../protocol/problem.js";
import type { Outcome } from "../durable/rpc.js";
import type { Principal } from "./auth.js";
import type { z } from "zod";
import type { Env } from "../platform/env.js";
import type { TraceContext } from "../core/trace.js";

export type AppEnv = { Bindings: Env; Variables: { requestId: string; principal: Principal; logFields: Record<string, unknown>; trace: TraceContext } };
export type App = OpenAPIHono<AppEnv>;
export type Ctx = Context<AppEnv>;

export function problem(c: Ctx | Context, type: ProblemType, detail?: string, extra: Partial<Problem> = {}): Response {
  const requestId = c.get("requestId") as string | undefined;
  const trace = (c as Ctx).get("trace") as TraceContext | undefined;
  const body = makeProblem(type, detail, { instance: c.req.path, requestId, ...extra });
  // A Response built here skips the headers Hono adds to its own, the request id among them.
  return new Response(JSON.stringify(body), { status: body.status, headers: { "content-type": "application/problem+json", ...(requestId ? { "x-request-id": requestId } : {}), ...(trace ? { traceparent: formatTraceparent(trace) } : {}) } });
}

export function validationProblem(c: Ctx | Context, error: z.ZodError, what = "request"): Response {
  const errors = zodErrors(error);
  return problem(c, "validation", `the ${what} is not valid: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`, { errors });
}

/** Unwraps a Durable Object's answer, or turns its failure into problem+json. */
export function fromOutcome<T>(c: Ctx, outcome: Outcome<T>, onOk: (value: T) => Response): Response {
  return outcome.ok ? onOk(outcome.value) : problem(c, outcome.problem, outcome.detail);
}

/**
 * Adds fields (a job id, a device id) to this request's one log line, so each
 * request is one structured event in the logs rather than several.
 */
export function annotate(c: Ctx, fields: Record<string, unknown>) {
  c.set("logFields", { ...c.get("logFields"), ...fields });
}

export type LogLevel = "debug" | "info" | "warn" | "error";
const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold = RANK.info;

/** From the LOG_LEVEL var (default info); set once per isolate by the app. */
export function setLogLevel(level: string | undefined) {
  threshold = RANK[(level ?? "info") as LogLevel] ?? RANK.info;
}

/** The fields that tie a log line to its trace (W3C trace context; docs/observability.md). */
export function traceFields(c: Ctx | Context): { trace_id?: string; span_id?: string } {
  const t = (c as Ctx).get("trace") as TraceContext | undefined;
  return t ? { trace_id: t.traceId, span_id: t.spanId } : {};
}

/** One JSON object per event: the Cloudflare dashboard indexes its fields. */
export function log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}) {
  if (RANK[level] < threshold) return;
  const line = JSON.stringify({ level, msg, time: new Date().toISOString(), ...fields });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}
