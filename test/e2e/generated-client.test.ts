/**
 * A client generated from the live document (openapi-typescript 7 + openapi-fetch), run
 * against the real Worker and a real agent: the types come from this Worker's /openapi.json,
 * the client program (test/generated-client/client.ts) must type-check against them with
 * TypeScript 5, and every answer it receives is checked against the document at run time
 * (test/e2e/setup.ts). A document that disagrees with the API fails one or the other.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ADMIN_TOKEN, startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { TOOL_DIR, generateTypes, installTools, programCopy, typecheck, type Run } from "../helpers/generated-client.js";

/**
 * What the test calls of the client program, loosely: the program is imported at run time and
 * type-checked by the tool folder's TypeScript 5 (the root's TypeScript 7 sees neither its
 * packages nor its generated types).
 */
type Json = Record<string, unknown>;
interface Program {
  connect(baseUrl: string, token: string): unknown;
  registerDevice(api: unknown, baseUrl: string, name: string): Promise<{ deviceId: string; credential: string }>;
  pushModule(api: unknown, bytes: Uint8Array): Promise<{ digest: string; exports: { name: string }[] }>;
  runJob(api: unknown, device: string, module: string, fn: string, args: number[], waitSeconds: number): Promise<{ ended: Json; read: Json }>;
  readMissingJob(api: unknown, id: string): Promise<{ status: number; problem: Json }>;
}

let cp: ControlPlane;
let agent: AgentProcess | undefined;
let check: Run;
let program: Program;

beforeAll(async () => {
  cp = await startControlPlane();
  await installTools();
  await generateTypes(`${cp.url}/openapi.json`);
  check = await typecheck();
  program = (await import(join(TOOL_DIR, "client.ts"))) as Program;
}, 300_000);

afterAll(async () => {
  await agent?.kill();
  await cp?.stop();
});

describe("a client generated with openapi-typescript + openapi-fetch", () => {
  it("type-checks against the types generated from the live /openapi.json (TypeScript 5)", () => {
    expect(check.output).toBe("");
    expect(check.code).toBe(0);
    // The named components it relies on were generated (not `unknown` stand-ins).
    const types = readFileSync(join(TOOL_DIR, "generated", "api.ts"), "utf8");
    for (const name of ["Job", "Problem", "ModuleInfo", "JobSubmission"]) expect(types).toMatch(new RegExp(`\\b${name}: \\{`));
  });

  it("registers a device, pushes a module and runs a job on the real agent, then reads it", async () => {
    const admin = program.connect(cp.url, ADMIN_TOKEN);
    const device = await program.registerDevice(admin, cp.url, "generated-client");
    // The credential the client was given, handed to a real agent as an operator would (its data directory).
    const dataDir = mkdtempSync(join(tmpdir(), "wv-agent-"));
    writeFileSync(join(dataDir, "credential.json"), JSON.stringify({ server: cp.url, ...device }));
    agent = await startAgent({ server: cp.url, dataDir });
    expect(agent.deviceId).toBe(device.deviceId);

    const module = await program.pushModule(admin, new Uint8Array(readFileSync("examples/wasm/fibo.wasm")));
    expect(module.exports.map((e) => e.name)).toContain("fibo");
    const { ended, read } = await program.runJob(admin, device.deviceId, module.digest, "fibo", [12], 30);
    expect(ended).toMatchObject({ state: "SUCCEEDED", device: device.deviceId, result: { value: 233 } });
    expect(read).toEqual(ended);
  });

  it("types an error: a missing job's 404 is the document's Problem", async () => {
    const admin = program.connect(cp.url, ADMIN_TOKEN);
    const { status, problem } = await program.readMissingJob(admin, "dabcdefghijklmnop-abcdefghijklmnop");
    expect(status).toBe(404);
    expect(problem).toMatchObject({ type: "urn:wasmvisor:problem:not-found", status: 404, title: "Not found" });
    // And a refusal carries the same shape: the typed error is thrown with its fields.
    await expect(program.runJob(admin, "dabcdefghijklmnop", "0".repeat(64), "fibo", [1], 0)).rejects.toMatchObject({ status: 422, problem: { status: 422, type: "urn:wasmvisor:problem:unprocessable" } });
  });

  it("fails the check when the document does not describe what the program uses", async () => {
    const doc = (await (await fetch(`${cp.url}/openapi.json`)).json()) as {
      components: { schemas: Record<string, { properties: Record<string, unknown> }> };
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    // A Job without its state, and a 404 that is not the Problem: both are what a drifting document looks like.
    delete doc.components.schemas.Job!.properties.state;
    doc.paths["/v1/jobs/{id}"]!.get!.responses["404"] = { description: "Not found", content: { "application/json": { schema: { type: "object", properties: { message: { type: "string" } } } } } };
    const dir = programCopy("drifted");
    writeFileSync(join(dir, "openapi.json"), JSON.stringify(doc));
    await generateTypes(join(dir, "openapi.json"), dir);
    const drifted = await typecheck(dir);
    expect(drifted.code).not.toBe(0);
    const errors = drifted.output.split("\n").filter((l) => /^\S*client\.ts\(\d+,\d+\): error TS\d+/.test(l));
    expect(errors.some((l) => /Property 'state' does not exist/.test(l)), drifted.output).toBe(true);
    // The 404's body no longer is the Problem the program reads.
    expect(drifted.output).toMatch(/'\{ message\?: string; \}' is missing the following properties from type '\{ type: string; title: string; status: number/);
  });
});
