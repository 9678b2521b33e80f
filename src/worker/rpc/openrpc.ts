/** The OpenRPC 1.3 document, generated from the method table and its zod schemas. */
import { z } from "zod";
import { METHODS, type RpcMethod } from "./methods.js";
import { declaredErrors } from "./errors.js";

/** A REST route as the OpenAPI document names it: GET and /v1/jobs/{id}. */
export interface RouteRef {
  method: string;
  path: string;
}

/**
 * The route a method replays, as a template: its params that fill path parameters are named
 * as those (`id`, `scheduleId`), so building the call with `{name}` for each param yields the
 * path the OpenAPI document declares.
 */
// A service method names its device `device`; the path calls it {id}.
const PATH_NAME_OF: Record<string, string> = { device: "id" };
const TEMPLATE_PARAMS = new Proxy({}, { get: (_target, key) => (typeof key === "string" ? `{${PATH_NAME_OF[key] ?? key}}` : undefined) });
export const routeOf = (m: RpcMethod): RouteRef => {
  const call = m.rest(TEMPLATE_PARAMS);
  return { method: call.method, path: call.path };
};

const schemaOf = (s: z.ZodType, io: "input" | "output") => {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(s, { io, unrepresentable: "any" }) as Record<string, unknown>;
  return rest;
};

/** `problemStatusesOf` answers the error statuses (4xx, 5xx) the route declares in /openapi.json. */
export function openRpcDocument(version: string, problemStatusesOf: (route: RouteRef) => readonly number[]) {
  return {
    openrpc: "1.3.2",
    info: {
      title: "wasmvisor JSON-RPC",
      version,
      description: "Hero/Horus-style job API. Send the API key in the Authorization header. Every method is the REST route named in its description.",
    },
    methods: METHODS.map((m) => {
      const params = schemaOf(m.params, "input") as { properties?: Record<string, unknown>; required?: string[] };
      return {
        name: m.name,
        summary: m.summary,
        paramStructure: "by-name" as const,
        params: Object.entries(params.properties ?? {}).map(([name, schema]) => ({ name, schema, required: params.required?.includes(name) ?? false })),
        result: { name: "result", schema: schemaOf(m.result, "output") },
        errors: declaredErrors(problemStatusesOf(routeOf(m))),
      };
    }),
  };
}
