/**
 * Query parameters a route does not declare are refused (400 problem+json naming them),
 * on every operation in /openapi.json; the routes that take free-form parameters by
 * design (a deployment's function calls, the wasmiot facade) declare that in the
 * document as an object parameter (style form, explode), the OpenAPI way.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { call, routeWalk } from "./helpers.js";

type Parameter = { name: string; in: string; style?: string; explode?: boolean; schema?: { type?: string; additionalProperties?: unknown } };
type Operation = { "x-roles"?: string[]; parameters?: Parameter[] };
let doc: { paths: Record<string, Record<string, Operation>> };
let tokens: Record<string, string>;
let deviceId: string;
/** A concrete path for each path template (routeWalk). */
let concrete: (template: string) => string;

beforeAll(async () => {
  ({ tokens, deviceId, concrete } = await routeWalk("query-params"));
  doc = (await call("GET", "/openapi.json", { token: null })).body;
});

const freeForm = (op: Operation) => (op.parameters ?? []).find((p) => p.in === "query" && p.schema?.type === "object");
const operations = () => Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ path, method, op })));

describe("query parameters", () => {
  it("an undeclared one is refused with a 400 problem that names it, on every operation that declares its query", async () => {
    const strict = operations().filter(({ op }) => !freeForm(op));
    expect(strict.length).toBeGreaterThan(30);
    const rows: string[] = [];
    for (const { path, method, op } of strict) {
      const token = tokens[op["x-roles"]![0]!]!;
      const res = await call(method.toUpperCase(), `${concrete(path)}?wait=0&bogus-param=1`, { token, json: method === "get" || method === "delete" ? undefined : {} });
      const declaresWait = (op.parameters ?? []).some((p) => p.in === "query" && p.name === "wait");
      const named = res.status === 400 && res.type === "application/problem+json" && /bogus-param/.test(res.body.detail) && res.body.errors?.some((e: { path: string }) => e.path === "query.bogus-param");
      // `wait` is named too where the route does not take it; never where it does.
      const waitNamed = res.body?.errors?.some((e: { path: string }) => e.path === "query.wait");
      if (!named || waitNamed === declaresWait) rows.push(`${method.toUpperCase()} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    expect(rows).toEqual([]);
  });

  it("declared ones still work", async () => {
    expect((await call("GET", "/v1/jobs?limit=2")).status).toBe(200);
    expect((await call("GET", `/v1/devices?limit=1&status=online`)).status).toBe(200);
    expect((await call("GET", `/v1/devices/${deviceId}/logs?limit=5`)).status).toBe(200);
  });

  it("routes that take free-form parameters by design say so in the document, and are not refused for them", async () => {
    const free = operations().filter(({ op }) => freeForm(op)).map(({ path, method }) => `${method.toUpperCase()} ${path}`);
    expect(free).toEqual(expect.arrayContaining(["GET /v1/deployments/{id}/modules/{module}/{function}", "POST /v1/deployments/{id}/modules/{module}/{function}", "GET /wasmiot/{device}/{deployment}/modules/{module}/{function}"]));
    for (const { op } of operations().filter(({ op }) => freeForm(op))) {
      expect(freeForm(op)).toMatchObject({ style: "form", explode: true, schema: { type: "object", additionalProperties: expect.anything() } });
    }
    const res = await call("GET", "/v1/deployments/no-such-deployment/modules/m/f?minuend=10");
    expect(res.status).toBe(404);
  });
});
