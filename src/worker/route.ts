/**
 * Every route is declared through `route()`, which makes the roles a required
 * part of the definition: the auth decision is written next to the schema and
 * ends up in the OpenAPI document (x-roles), where the auth matrix test reads it.
 */
import { createRoute, type RouteConfig } from "@hono/zod-openapi";
import { allow, type CallerRole } from "./auth.js";
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
  return createRoute({
    ...rest,
    middleware: [allow(roles)] as const,
    security: [{ bearer: [] }],
    "x-roles": roles,
    responses: { ...commonProblems, ...rest.responses },
  });
}

export const jsonResponse = <S extends z.ZodType>(schema: S, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

export const jsonBody = <S extends z.ZodType>(schema: S) => ({ required: true, content: { "application/json": { schema } } });
