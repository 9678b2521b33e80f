import { describe, expect, it } from "vitest";
import { Ajv } from "ajv";
import openrpcMeta from "@open-rpc/meta-schema";
import jsonSchemaMeta from "@json-schema-tools/meta-schema";
import { openRpcDocument } from "./openrpc.js";
import { declaredErrors } from "./errors.js";
import { METHODS } from "./methods.js";

/** Both meta-schemas name a custom $schema; ajv is told to treat them as plain schemas. */
const plain = (s: unknown) => {
  const { $schema: _custom, ...rest } = s as Record<string, unknown>;
  return rest;
};

/** Statuses as a route with a body and a path parameter declares them (the real ones come from /openapi.json: test/worker/rpc.test.ts). */
const SOME_ROUTE_STATUSES = () => [400, 401, 403, 404, 409, 413, 415, 422, 500];

describe("the OpenRPC document", () => {
  it("is valid against the OpenRPC 1.3 meta-schema", () => {
    const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
    ajv.addSchema(plain(jsonSchemaMeta), "https://meta.json-schema.tools");
    const validate = ajv.compile(plain(openrpcMeta));
    const doc = openRpcDocument("test", SOME_ROUTE_STATUSES);
    expect(validate(doc), JSON.stringify(validate.errors?.slice(0, 3))).toBe(true);
    expect(validate({ openrpc: "1.3.2", methods: [{ name: 1 }] })).toBe(false); // the validator does reject
  });

  it("describes every method in the table, with Hero's names", () => {
    const names = openRpcDocument("test", SOME_ROUTE_STATUSES).methods.map((m) => m.name);
    expect(names).toEqual(METHODS.map((m) => m.name));
    for (const n of ["jobs.create", "job.run", "job.start", "job.status", "job.result", "job.stop", "job.delete", "runner.register", "runner.list", "runner.status", "runner.start", "runner.stop", "key.create", "key.list", "key.remove", "supervisor.info"]) {
      expect(names).toContain(n);
    }
  });

  it("declares per method the protocol errors and one error per code its route's statuses map to", () => {
    for (const m of openRpcDocument("test", SOME_ROUTE_STATUSES).methods) {
      const codes = m.errors.map((e) => e.code);
      expect(codes, m.name).toEqual([-32700, -32600, -32601, -32602, -32001, -32003, -32004, -32009, -32013, -32000]);
      expect(new Set(codes).size, `${m.name}: one entry per code`).toBe(codes.length);
    }
    const errors = declaredErrors([404, 422, 400, 503]);
    expect(errors.find((e) => e.code === -32602)?.message).toMatch(/HTTP 400, 422/);
    expect(errors.find((e) => e.code === -32004)).toMatchObject({ message: "The route answered HTTP 404 (data: the problem)", data: { properties: { type: {}, status: {} } } });
    expect(errors.find((e) => e.code === -32000)?.message).toMatch(/HTTP 503/);
    expect(errors.some((e) => e.code === -32009), "no 409 declared, no -32009").toBe(false);
  });
});
