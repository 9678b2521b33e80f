/**
 * The JSON-RPC errors a method can answer: the protocol's own, and the problems of the REST
 * route it replays, each HTTP status mapped to one code. The endpoint answers with these codes
 * and rpc.discover declares them from the same table, so the two cannot disagree.
 */
import { z } from "zod";
import { Problem } from "../../protocol/problem.js";

/** HTTP statuses of problems mapped to JSON-RPC error codes (server-defined range); any other status is -32000. */
export const CODE_BY_STATUS: Readonly<Record<number, number>> = { 400: -32602, 401: -32001, 403: -32003, 404: -32004, 409: -32009, 413: -32013, 422: -32602 };
export const SERVER_ERROR = -32000;
export const rpcCodeOf = (status: number) => CODE_BY_STATUS[status] ?? SERVER_ERROR;

export const PARSE_ERROR = { code: -32700, message: "Parse error: the body is not JSON" } as const;
export const INVALID_REQUEST = { code: -32600, message: "Invalid Request: not a JSON-RPC 2.0 request (or an empty or oversized batch)" } as const;
export const METHOD_NOT_FOUND = { code: -32601, message: "Method not found" } as const;
export const INVALID_PARAMS = { code: -32602, message: "Invalid params: not an object, or not what the method takes (data: the issues)" } as const;

export interface OpenRpcError {
  code: number;
  message: string;
  data?: unknown;
}

/** The problem+json schema inline (zod puts a schema with an id under $defs and refers to it). */
const PROBLEM_SCHEMA = (() => {
  const json = z.toJSONSchema(Problem, { io: "output" }) as { $defs?: Record<string, object> };
  return json.$defs?.Problem ?? json;
})();

/**
 * What a method replaying a route with these problem statuses can answer: the protocol errors,
 * then one error per code, its `data` the problem+json the route sent (described by its schema).
 */
export function declaredErrors(problemStatuses: readonly number[]): OpenRpcError[] {
  const statuses = [...problemStatuses].sort((a, b) => a - b);
  const statusesByCode = new Map<number, number[]>();
  for (const status of statuses) {
    const code = rpcCodeOf(status);
    statusesByCode.set(code, [...(statusesByCode.get(code) ?? []), status]);
  }
  const invalidParamStatuses = statusesByCode.get(INVALID_PARAMS.code) ?? [];
  statusesByCode.delete(INVALID_PARAMS.code); // declared once, below, with the route's statuses named
  const invalidParams = invalidParamStatuses.length
    ? { ...INVALID_PARAMS, message: `${INVALID_PARAMS.message}; or the route answered HTTP ${invalidParamStatuses.join(", ")} (data: the problem)` }
    : INVALID_PARAMS;
  return [
    PARSE_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    invalidParams,
    ...[...statusesByCode].map(([code, statuses]) => ({ code, message: `The route answered HTTP ${statuses.join(", ")} (data: the problem)`, data: PROBLEM_SCHEMA })),
  ];
}
