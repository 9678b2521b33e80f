/** /openapi.json as a generated client reads it: every operation named, every error typed, no nullable query parameters. */
import { describe, expect, it } from "vitest";
import { call } from "./helpers.js";
import { lintDocument } from "../helpers/conformance.js";

describe("the OpenAPI document", () => {
  it("names every operation, types every error as problem+json, and declares no nullable query parameter", async () => {
    const doc = (await call("GET", "/openapi.json", { token: null })).body;
    expect(lintDocument(doc)).toEqual([]);
  });

  it("names the main types as components, referenced by $ref", async () => {
    const doc = (await call("GET", "/openapi.json", { token: null })).body;
    for (const name of ["Job", "JobSubmission", "Device", "DeploymentManifest", "Deployment", "Problem", "JsonRpcRequest"]) {
      expect(Object.keys(doc.components?.schemas ?? {}), name).toContain(name);
    }
    expect(JSON.stringify(doc.paths)).toContain('"$ref":"#/components/schemas/Problem"');
  });
});
