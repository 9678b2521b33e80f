/**
 * JSON-RPC 2.0 over POST /rpc. A call is replayed as its REST request through the
 * same app, with the caller's Authorization header, so roles, validation and
 * handlers are exactly those of REST. Problems become JSON-RPC errors carrying
 * the problem as `data`.
 */
import { z } from "zod";
import type { Problem } from "../../protocol/problem.js";
import { METHOD_BY_NAME } from "../rpc/methods.js";
import { openRpcDocument, type RouteRef } from "../rpc/openrpc.js";
import { INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, rpcCodeOf } from "../rpc/errors.js";
import { API_VERSION } from "./info.js";
import { route } from "../route.js";
import type { App, Ctx } from "../http.js";

const Envelope = z
  .object({
    jsonrpc: z.literal("2.0"),
    method: z.string(),
    params: z.unknown().optional(),
    id: z.union([z.string(), z.number(), z.null()]).optional(),
  })
  .meta({ id: "JsonRpcRequest" });

/** A request or a batch of them, as JSON Schema: documented, while the handler does the parsing (JSON-RPC error codes, not 400s). */
const RPC_REQUEST_SCHEMA: { oneOf: object[] } = {
  oneOf: [
    { $ref: "#/components/schemas/JsonRpcRequest" },
    { type: "array", items: { $ref: "#/components/schemas/JsonRpcRequest" }, minItems: 1 },
  ],
};

const RpcErrorObject = z.object({ code: z.number().int(), message: z.string(), data: z.unknown().optional() });
const RpcResponseObject = z
  .object({ jsonrpc: z.literal("2.0"), id: z.union([z.string(), z.number(), z.null()]), result: z.unknown().optional(), error: RpcErrorObject.optional() })
  .meta({ id: "JsonRpcResponse" });
const RpcAnswer = z.union([RpcResponseObject, z.array(RpcResponseObject)]);

type RpcError = { code: number; message: string; data?: unknown };
type RpcResponse = { jsonrpc: "2.0"; id: string | number | null; result?: unknown; error?: RpcError };

let problemStatuses: ((route: RouteRef) => number[]) | undefined;
/** The error statuses each route declares, read once from the app's own OpenAPI document. */
function problemStatusesIn(app: App): (route: RouteRef) => number[] {
  if (problemStatuses) return problemStatuses;
  const paths = app.getOpenAPI31Document({ openapi: "3.1.0", info: { title: "wasmvisor", version: API_VERSION } }).paths ?? {};
  problemStatuses = ({ method, path }) => {
    const operation = (paths[path] as Record<string, { responses?: Record<string, unknown> }> | undefined)?.[method.toLowerCase()];
    if (!operation) throw new Error(`a JSON-RPC method replays ${method} ${path}, which /openapi.json does not declare`);
    return Object.keys(operation.responses ?? {}).map(Number).filter((s) => s >= 400);
  };
  return problemStatuses;
}

const rpc = route({
  method: "post",
  path: "/rpc",
  roles: ["admin", "user", "register", "device"],
  summary: "JSON-RPC 2.0 (OpenRPC document: method rpc.discover); each method enforces its REST route's roles",
  // The body is documented but not validated here: the handler parses it itself, so that bad JSON is a JSON-RPC -32700, not a 400.
  request: { body: { required: true, content: { "application/json": { schema: RPC_REQUEST_SCHEMA } } } },
  responses: {
    200: { description: "JSON-RPC response (or batch of responses); errors carry the problem as `data`", content: { "application/json": { schema: RpcAnswer } } },
    204: { description: "Only notifications were sent: nothing to answer" },
  },
});

async function invoke(app: App, c: Ctx, raw: unknown): Promise<RpcResponse | null> {
  const env = Envelope.safeParse(raw);
  if (!env.success) return { jsonrpc: "2.0", id: null, error: { code: INVALID_REQUEST.code, message: "Invalid Request", data: env.error.issues } };
  const { method: name, params, id } = env.data;
  const reply = (body: { result: unknown } | { error: RpcError }): RpcResponse | null => (id === undefined ? null : { jsonrpc: "2.0", id, ...body });
  if (name === "rpc.discover") return reply({ result: openRpcDocument(API_VERSION, problemStatusesIn(app)) });
  const m = METHOD_BY_NAME.get(name);
  if (!m) return reply({ error: { code: METHOD_NOT_FOUND.code, message: `Method not found: ${name}` } });
  if (params !== undefined && (typeof params !== "object" || params === null || Array.isArray(params))) {
    return reply({ error: { code: INVALID_PARAMS.code, message: "params must be an object (by-name)" } });
  }
  const parsed = m.params.safeParse(params ?? {});
  if (!parsed.success) return reply({ error: { code: INVALID_PARAMS.code, message: "Invalid params", data: parsed.error.issues } });

  const call = m.rest(parsed.data);
  const url = new URL(call.path, c.req.url);
  for (const [k, v] of Object.entries(call.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
  const headers = new Headers({ authorization: c.req.header("authorization") ?? "", "x-request-id": c.get("requestId") });
  let body: string | undefined;
  if (call.raw) {
    headers.set("content-type", call.raw.contentType);
    body = call.raw.body;
  } else if (call.body !== undefined) {
    headers.set("content-type", "application/json");
    body = JSON.stringify(call.body);
  }
  const res = await app.fetch(new Request(url, { method: call.method, headers, body }), c.env, c.executionCtx);
  const answer = (await res.json().catch(() => null)) as unknown;
  if (res.ok) return reply({ result: answer });
  const problem = answer as Partial<Problem> | null;
  return reply({ error: { code: rpcCodeOf(res.status), message: problem?.detail ?? problem?.title ?? `HTTP ${res.status}`, data: problem } });
}

export function rpcRoutes(app: App) {
  app.openAPIRegistry.register("JsonRpcRequest", Envelope);
  app.openapi(rpc, async (c) => {
    let raw: unknown;
    try {
      raw = await c.req.json();
    } catch {
      return c.json({ jsonrpc: "2.0", id: null, error: { code: PARSE_ERROR.code, message: "Parse error" } }, 200);
    }
    if (Array.isArray(raw)) {
      if (raw.length === 0) return c.json({ jsonrpc: "2.0", id: null, error: { code: INVALID_REQUEST.code, message: "Invalid Request: empty batch" } }, 200);
      if (raw.length > 100) return c.json({ jsonrpc: "2.0", id: null, error: { code: INVALID_REQUEST.code, message: "Invalid Request: at most 100 calls per batch" } }, 200);
      const out: RpcResponse[] = [];
      for (const call of raw) {
        const r = await invoke(app, c, call);
        if (r) out.push(r);
      }
      return out.length ? c.json(out, 200) : c.body(null, 204);
    }
    const r = await invoke(app, c, raw);
    return r ? c.json(r, 200) : c.body(null, 204);
  });
}
