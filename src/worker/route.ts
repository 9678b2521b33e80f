/**
 * Every route is declared through `route()`, which makes the roles a required
 * part of the definition: the auth decision is written next to the schema and
 * ends up in the OpenAPI document (x-roles), where the auth matrix test reads it.
 */
import { createRoute, type RouteConfig } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { allow, type CallerRole } from "./auth.js";
import { problem, type AppEnv } from "./http.js";
import type { z } from "zod";
import { Problem } from "../protocol/problem.js";

export const problemResponse = (description: string) => ({ description, content: { "application/problem+json": { schema: Problem } } });

/** What every route can answer. */
export const commonProblems = {
  400: problemResponse("The request is not valid"),
  401: problemResponse("No or bad credential"),
  403: problemResponse("The credential's role may not call this route"),
  500: problemResponse("Internal error (the requestId names it in the logs)"),
};

/** What a route answers besides its successes, by the kind of problem: each described once. */
const PROBLEM_DESCRIPTIONS = {
  404: "Not found (or not in the caller's namespace)",
  409: "Conflicts with the current state (an Idempotency-Key used with another body, a newer generation, an agent session a newer one took over, ...)",
  410: "Gone",
  413: "The request body is too large",
  422: "Well-formed but cannot be processed (the detail says why)",
  426: "Upgrade required",
  429: "Too many open streams for this credential or namespace: close one first",
  503: "Not configured: the control plane lacks a secret this route needs (DEVICE_CREDENTIAL_KEY)",
} as const;
export type DeclaredProblem = keyof typeof PROBLEM_DESCRIPTIONS;

/**
 * Query parameters a route does not name, taken by design (a deployed function's parameters
 * by name; the wasmiot facade's), as the document says so: one object parameter, `style:
 * form, explode: true`, whose properties are the query's names (OpenAPI's free-form query).
 */
export const freeFormQuery = (name: string, description: string) => ({
  name,
  in: "query" as const,
  required: false,
  style: "form" as const,
  explode: true,
  description,
  schema: { type: "object" as const, additionalProperties: { type: "string" as const } },
});

/**
 * Declares a route: its roles (required), its schema, and every status it can answer. The
 * statuses that follow from its shape are added here (404 for a path with parameters, 413
 * and 415 for a body, 503 where device credentials are checked); `problems` names the rest.
 * A query parameter the route does not declare is refused (400), unless `freeFormQuery`
 * documents that the route takes any.
 */
export function route<const R extends Omit<RouteConfig, "middleware">>(
  config: R & { roles: readonly CallerRole[]; problems?: readonly DeclaredProblem[]; freeFormQuery?: ReturnType<typeof freeFormQuery> },
) {
  const { roles, problems = [], freeFormQuery: freeForm, ...rest } = config;
  const bodyTypes = Object.keys(rest.request?.body?.content ?? {});
  const queryNames = Object.keys((rest.request?.query as { shape?: object } | undefined)?.shape ?? {});
  const implied: DeclaredProblem[] = [
    ...(rest.path.includes("{") ? [404 as const] : []),
    ...(bodyTypes.length > 0 ? [413 as const] : []),
    ...(roles.includes("device") || rest.path === "/v1/devices/register" ? [503 as const] : []),
  ];
  const declared = Object.fromEntries([...new Set([...implied, ...problems])].map((s) => [s, problemResponse(PROBLEM_DESCRIPTIONS[s])]));
  return createRoute({
    operationId: operationIdOf(rest.method, rest.path),
    ...rest,
    ...(freeForm ? { parameters: [...(rest.parameters ?? []), freeForm] as RouteConfig["parameters"] } : {}),
    // The caller first, then the query and the media type: nothing about the request is judged for a stranger.
    middleware: [allow(roles), freeForm ? passThrough : declaredQueryOnly(queryNames), acceptsMediaTypes(bodyTypes)] as const,
    security: (roles.some((r) => r === "admin" || r === "user") ? [{ bearer: [] }, { session: [] }] : [{ bearer: [] }]) as Record<string, string[]>[],
    "x-roles": roles,
    responses: { ...commonProblems, ...declared, ...(bodyTypes.length > 0 ? { 415: problemResponse("The body's media type is not one this route takes") } : {}), ...rest.responses },
  });
}

/**
 * A stable name for a generated client's method, from the route itself:
 * GET /v1/jobs/{id} -> getJobsById, POST /v1/jobs/{id}/cancel -> postJobsByIdCancel.
 */
export function operationIdOf(method: string, path: string): string {
  const words = path
    .split("/")
    .filter((s) => s && s !== "v1")
    .map((s) => (s.startsWith("{") ? `by-${s.slice(1, -1)}` : s))
    .flatMap((s) => s.split(/[^A-Za-z0-9]+/))
    .filter(Boolean);
  return method.toLowerCase() + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join("");
}

/** `application/json; charset=utf-8` matches `application/json`; `*\/*` or `type/*` patterns match their family. */
export function mediaTypeMatches(contentType: string, declared: string): boolean {
  const actual = contentType.split(";")[0]!.trim().toLowerCase();
  const [type, subtype] = declared.toLowerCase().split("/");
  if (type === "*") return true;
  return subtype === "*" ? actual.startsWith(`${type}/`) : actual === declared.toLowerCase();
}

const passThrough: MiddlewareHandler<AppEnv> = (_c, next) => next();

/** A query parameter the route does not declare is a 400 that names it (a misspelt `wiat` is not silently ignored). */
function declaredQueryOnly(names: string[]): MiddlewareHandler<AppEnv> {
  const declared = new Set(names);
  return async (c, next) => {
    const unknown = [...new Set(new URL(c.req.url).searchParams.keys())].filter((n) => !declared.has(n));
    if (unknown.length === 0) return next();
    const takes = names.length > 0 ? `this route takes ${names.join(", ")}` : "this route takes none";
    return problem(c, "validation", `unknown query parameter ${unknown.map((n) => `"${n}"`).join(", ")}: ${takes}`, {
      errors: unknown.map((n) => ({ path: `query.${n}`, message: "not a parameter of this route" })),
    });
  };
}

/** A body of a type the route does not declare is a 415 that names the types it does take. */
function acceptsMediaTypes(types: string[]): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (types.length === 0) return next();
    const contentType = c.req.header("content-type");
    const hasBody = contentType !== undefined || Number(c.req.header("content-length") ?? 0) > 0 || c.req.header("transfer-encoding") !== undefined;
    if (hasBody && !types.some((t) => mediaTypeMatches(contentType ?? "", t))) {
      return problem(c, "unsupported-media-type", `this route takes ${types.join(" or ")}; the request sent ${contentType ?? "no Content-Type"}`);
    }
    return next();
  };
}

export const jsonResponse = <S extends z.ZodType>(schema: S, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

export const jsonBody = <S extends z.ZodType>(schema: S) => ({ required: true, content: { "application/json": { schema } } });
