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

const problemResponse = (description: string) => ({ description, content: { "application/problem+json": { schema: Problem } } });

export const commonProblems = {
  400: problemResponse("The request is not valid"),
  401: problemResponse("No or bad credential"),
  403: problemResponse("The credential's role may not call this route"),
  // Declared without a schema on purpose: it lets handlers return problem+json Responses
  // for any status (the typed-response check only applies when every status has content).
  500: { description: "Internal error, as application/problem+json" },
  503: { description: "Not configured: a device credential arrived but the control plane has no DEVICE_CREDENTIAL_KEY (application/problem+json)" },
};

export function route<const R extends Omit<RouteConfig, "middleware">>(config: R & { roles: readonly CallerRole[] }) {
  const { roles, ...rest } = config;
  const bodyTypes = Object.keys(rest.request?.body?.content ?? {});
  return createRoute({
    ...rest,
    // The caller first, then the media type: nothing about the body is judged for a stranger.
    middleware: [allow(roles), acceptsMediaTypes(bodyTypes)] as const,
    security: [{ bearer: [] }],
    "x-roles": roles,
    responses: { ...commonProblems, ...(bodyTypes.length > 0 ? { 415: problemResponse("The body's media type is not one this route takes") } : {}), ...rest.responses },
  });
}

/** `application/json; charset=utf-8` matches `application/json`; `*\/*` or `type/*` patterns match their family. */
export function mediaTypeMatches(contentType: string, declared: string): boolean {
  const actual = contentType.split(";")[0]!.trim().toLowerCase();
  const [type, subtype] = declared.toLowerCase().split("/");
  if (type === "*") return true;
  return subtype === "*" ? actual.startsWith(`${type}/`) : actual === declared.toLowerCase();
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
