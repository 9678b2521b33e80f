import { describe, expect, it } from "vitest";
import { Ajv } from "ajv";
import openrpcMeta from "@open-rpc/meta-schema";
import jsonSchemaMeta from "@json-schema-tools/meta-schema";
import { openRpcDocument } from "./openrpc.js";
import { METHODS } from "./methods.js";

/** Both meta-schemas name a custom $schema; ajv is told to treat them as plain schemas. */
const plain = (s: unknown) => {
  const { $schema: _custom, ...rest } = s as Record<string, unknown>;
  return rest;
};

describe("the OpenRPC document", () => {
  it("is valid against the OpenRPC 1.3 meta-schema", () => {
    const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
    ajv.addSchema(plain(jsonSchemaMeta), "https://meta.json-schema.tools");
    const validate = ajv.compile(plain(openrpcMeta));
    const doc = openRpcDocument("test");
    expect(validate(doc), JSON.stringify(validate.errors?.slice(0, 3))).toBe(true);
    expect(validate({ openrpc: "1.3.2", methods: [{ name: 1 }] })).toBe(false); // the validator does reject
  });

  it("describes every method in the table, with Hero's names", () => {
    const names = openRpcDocument("test").methods.map((m) => m.name);
    expect(names).toEqual(METHODS.map((m) => m.name));
    for (const n of ["jobs.create", "job.run", "job.start", "job.status", "job.result", "job.stop", "job.delete", "runner.register", "runner.list", "runner.status", "runner.start", "runner.stop", "key.create", "key.list", "key.remove", "supervisor.info"]) {
      expect(names).toContain(n);
    }
  });
});
