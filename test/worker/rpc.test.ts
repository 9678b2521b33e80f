import { describe, expect, it } from "vitest";
import { call, poll, registerDevice, report, uploadModule, ADMIN } from "./helpers.js";
import { METHOD_BY_NAME } from "../../src/worker/rpc/methods.js";
import { routeOf } from "../../src/worker/rpc/openrpc.js";
import { rpcCodeOf } from "../../src/worker/rpc/errors.js";

const rpc = (method: string, params?: unknown, token: string | null = ADMIN, id = 1) =>
  call("POST", "/rpc", { token, json: { jsonrpc: "2.0", method, ...(params === undefined ? {} : { params }), ...(id === undefined ? {} : { id }) } });

type DiscoveredMethod = { name: string; errors?: { code: number; message: string; data?: unknown }[] };
const PROTOCOL_CODES = [-32700, -32600, -32601, -32602];

async function declaredCodes(): Promise<Map<string, Set<number>>> {
  const methods = (await rpc("rpc.discover")).body.result.methods as DiscoveredMethod[];
  return new Map(methods.map((m) => [m.name, new Set((m.errors ?? []).map((e) => e.code))]));
}

describe("JSON-RPC errors: each method declares what it can answer", () => {
  it("every method declares the protocol errors and, through CODE_BY_STATUS, every error status its REST route documents", async () => {
    const methods = (await rpc("rpc.discover")).body.result.methods as DiscoveredMethod[];
    const openapi = (await call("GET", "/openapi.json")).body as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    expect(methods.length).toBeGreaterThan(10);
    for (const m of methods) {
      const route = routeOf(METHOD_BY_NAME.get(m.name)!);
      const operation = openapi.paths[route.path]?.[route.method.toLowerCase()];
      expect(operation, `${m.name} replays ${route.method} ${route.path}`).toBeDefined();
      const statuses = Object.keys(operation!.responses).map(Number).filter((s) => s >= 400);
      expect(statuses.length, m.name).toBeGreaterThan(0);
      const expected = new Set([...PROTOCOL_CODES, ...statuses.map(rpcCodeOf)]);
      const codes = (m.errors ?? []).map((e) => e.code);
      expect(new Set(codes), m.name).toEqual(expected);
      expect(codes, `${m.name}: one entry per code`).toHaveLength(expected.size);
      for (const e of m.errors!.filter((e) => !PROTOCOL_CODES.includes(e.code))) expect(e.data, `${m.name} ${e.code}: data is the problem`).toMatchObject({ properties: { type: {}, status: {} } });
    }
  });

  it("an error a call answers is one its method declares", async () => {
    const declared = await declaredCodes();
    const unknownJob = "dabcdefghijklmnop-abcdefghijklmnop";
    const answered: [string, number][] = [];
    const collect = async (method: string, params: unknown) => {
      const error = (await rpc(method, params)).body.error as { code: number } | undefined;
      expect(error, `${method} ${JSON.stringify(params)} should fail`).toBeDefined();
      answered.push([method, error!.code]);
    };
    await collect("job.status", { id: unknownJob });
    expect(answered[0]).toEqual(["job.status", -32004]);
    await collect("runner.status", { id: "dabcdefghijklmnop" });
    await collect("job.start", { id: unknownJob });
    await collect("key.create", { role: "emperor" });
    await collect("job.status", "not an object");
    // Every method called with no params: whatever each answers (invalid params, not found, ...).
    for (const name of declared.keys()) {
      const error = (await rpc(name, {})).body.error as { code: number } | undefined;
      if (error) answered.push([name, error.code]);
    }
    expect(answered.length).toBeGreaterThan(5);
    for (const [method, code] of answered) expect(declared.get(method), `${method} answered ${code}`).toContain(code);
  });
});

describe("JSON-RPC 2.0", () => {
  it("serves every method rpc.discover describes, and nothing it does not", async () => {
    const doc = (await rpc("rpc.discover")).body.result;
    expect(doc.openrpc).toBe("1.3.2");
    for (const m of doc.methods as { name: string }[]) {
      const res = await rpc(m.name, {});
      expect(res.body.error?.code, m.name).not.toBe(-32601);
    }
    expect((await rpc("jobs.fly", {})).body.error.code).toBe(-32601);
  });

  it("runs the Hero flow: jobs.create, job.start, job.result, job.delete", async () => {
    const { deviceId, credential } = await registerDevice();
    const digest = await uploadModule("math");
    const created = (await rpc("jobs.create", { device: deviceId, module: digest, function: "add32", args: [40, 2] })).body.result;
    expect(created.state).toBe("CREATED");
    expect((await rpc("job.start", { id: created.id })).body.result.state).toBe("QUEUED");
    const lease = (await poll(credential)).body.jobs[0];
    await report(credential, created.id, lease.leaseToken, 42);
    const result = (await rpc("job.result", { id: created.id, wait: 1 })).body.result;
    expect(result).toMatchObject({ state: "SUCCEEDED", result: { value: 42 } });
    expect((await rpc("job.status", { id: created.id })).body.result.state).toBe("SUCCEEDED");
    expect((await rpc("job.delete", { id: created.id })).body.result).toEqual({ id: created.id });
    expect((await rpc("job.status", { id: created.id })).body.error.code).toBe(-32004);
  });

  it("drains and resumes a runner", async () => {
    const { deviceId, credential } = await registerDevice();
    const digest = await uploadModule("math");
    expect((await rpc("runner.stop", { id: deviceId })).body.result.drained).toBe(true);
    const job = (await rpc("jobs.create", { device: deviceId, module: digest, function: "add32", args: [1, 1], start: true })).body.result;
    expect((await poll(credential)).body.jobs).toHaveLength(0);
    expect((await rpc("runner.start", { id: deviceId })).body.result.drained).toBe(false);
    expect((await poll(credential)).body.jobs[0].jobId).toBe(job.id);
  });

  it("enforces each method's REST roles, with the key in the Authorization header", async () => {
    const user = (await rpc("key.create", { role: "user" })).body.result.key;
    const denied = await rpc("key.create", { role: "admin" }, user);
    expect(denied.body.error).toMatchObject({ code: -32003, data: { type: "urn:wasmvisor:problem:forbidden" } });
    expect((await rpc("supervisor.info", {}, user)).body.result.name).toBe("wasmvisor");
    expect((await rpc("supervisor.info", {}, null)).status).toBe(401);
  });

  it("answers protocol errors as JSON-RPC errors", async () => {
    expect((await call("POST", "/rpc", { body: "{oops", type: "application/json" })).body.error.code).toBe(-32700);
    expect((await call("POST", "/rpc", { json: { method: "job.status" } })).body.error.code).toBe(-32600);
    expect((await rpc("job.status", { id: "nope" })).body.error.code).toBe(-32602);
    expect((await rpc("job.status", ["positional"])).body.error.code).toBe(-32602);
    const notification = await call("POST", "/rpc", { json: { jsonrpc: "2.0", method: "supervisor.info" } });
    expect(notification.status).toBe(204); // no id: nothing to answer
    const batch = await call("POST", "/rpc", { json: [{ jsonrpc: "2.0", method: "supervisor.info", id: 1 }, { jsonrpc: "2.0", method: "nope", id: 2 }] });
    expect(batch.body.map((r: { id: number }) => r.id)).toEqual([1, 2]);
    expect(batch.body[1].error.code).toBe(-32601);
  });
});
