/**
 * Tenants never reach each other on any path between objects: a chain step
 * (named by deployment, by device, or by a wasmiot URL) cannot land on another
 * tenant's device, the job view of a chain does not show another tenant's step,
 * and every Durable Object method the Worker calls refuses a caller of another
 * namespace itself, so a route that forgets its own check still cannot cross.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { runDurableObjectAlarm, runInDurableObject } from "./helpers.js";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { call, DESCRIPTION, poll, report, uploadModule } from "./helpers.js";
import { chainJobId } from "../../src/durable/chain-forward.js";
import chainManifest from "../fixtures/wasmiot/manifest-chain-fibo-deviceA.json";
import { deploymentStub } from "../../src/platform/stubs.js";

type Tenant = { ns: string; admin: string; deviceId: string; credential: string; signer: { privateKey: CryptoKey; kid: string } };

const device = (id: string) => env.DEVICES.get(env.DEVICES.idFromName(id));
let digest: string;
let a: Tenant;
let b: Tenant;

async function tenant(ns: string): Promise<Tenant> {
  const admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: ns } })).body.key as string;
  const register = (await call("POST", "/v1/keys", { token: admin, json: { role: "register" } })).body.key as string;
  const dev = (await call("POST", "/v1/devices/register", { token: register, json: { name: `${ns}-dev`, description: DESCRIPTION } })).body;
  const pair = await generateKeyPair("EdDSA", { extractable: true });
  const key = await call("POST", "/v1/orchestrator-keys", { token: admin, json: { jwk: await exportJWK(pair.publicKey), label: ns } });
  expect(key.status).toBe(201);
  return { ns, admin, deviceId: dev.deviceId, credential: dev.credential, signer: { privateKey: pair.privateKey, kid: key.body.kid } };
}

async function deploy(t: Tenant, deployment: unknown) {
  const jwt = await new SignJWT({ deployment }).setProtectedHeader({ alg: "EdDSA", kid: t.signer.kid }).setIssuedAt().setExpirationTime("5m").setJti(crypto.randomUUID()).sign(t.signer.privateKey);
  return call("POST", "/v1/deployments", { token: t.admin, body: jwt, type: "application/jose" });
}

const mathOn = (deviceId: string, functions: Record<string, unknown>) => ({ name: "math", digest, devices: [deviceId], functions, mounts: [] });
const HALF = { params: [{ name: "x", type: "number" }], result: "number" };
const ADD = { params: [{ name: "a", type: "integer" }, { name: "b", type: "integer" }], result: "integer" };

/** Every job of a device, whatever its namespace (an admin-all read of its object). */
const jobsOn = (deviceId: string) => runInDurableObject(device(deviceId), (_o, state) => state.storage.sql.exec<{ id: string }>("SELECT id FROM jobs").toArray().map((r) => r.id));

/** Puts a deployment part with a chain step straight into A's device object (as a buggy deploy route would), calls it and runs the step. */
async function chainedCallOnA(deployment: string, to: Record<string, unknown>) {
  const part = { deployment, generation: 1, source: "signed", modules: [{ name: "math", digest, mounts: [], functions: { add32: { ...ADD, to, instance: "fresh", timeoutMs: 10_000, inputs: [], outputs: [] } } }] };
  const put = await device(a.deviceId).putDeployment(a.ns, part as never);
  expect(put.ok).toBe(true);
  const jobId = `${a.deviceId}-${"a".repeat(10)}${crypto.randomUUID().replace(/[^a-z]/g, "").padEnd(6, "b").slice(0, 6)}`;
  const placed = await device(a.deviceId).call(a.ns, jobId, { deployment, module: "math", function: "add32", method: "GET", query: { a: "2", b: "2" }, body: {}, files: [], prev: null });
  expect(placed.ok, JSON.stringify(placed)).toBe(true);
  const leased = (await poll(a.credential)).body.jobs.find((j: { jobId: string }) => j.jobId === jobId);
  expect((await report(a.credential, jobId, leased.leaseToken, 4)).status).toBe(200);
  await runDurableObjectAlarm(device(a.deviceId));
  return jobId;
}

beforeAll(async () => {
  digest = await uploadModule("math");
  a = await tenant("chain-a");
  b = await tenant("chain-b");
  expect((await deploy(b, { id: "b-dep", modules: [mathOn(b.deviceId, { half: HALF })] })).status).toBe(201);
  expect((await deploy(b, { id: "shared", modules: [mathOn(b.deviceId, { half: HALF })] })).status).toBe(201);
});

describe("chains across tenants", () => {
  it("refuses a deployment whose chain step names another tenant's device through another deployment", async () => {
    const res = await deploy(a, { id: "a-dep", modules: [mathOn(a.deviceId, { add32: { ...ADD, to: { device: b.deviceId, deployment: "b-dep", module: "math", function: "half" } } })] });
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.detail).toMatch(/not registered in namespace chain-a/);
    expect(await jobsOn(b.deviceId)).toEqual([]);
  });

  it("refuses a deployment whose chain step names another tenant's device directly", async () => {
    const res = await deploy(a, { id: "shared", modules: [mathOn(a.deviceId, { add32: { ...ADD, to: { device: b.deviceId, module: "math", function: "half" } } })] });
    expect(res.status, JSON.stringify(res.body)).toBe(422);
  });

  it("the next device refuses a forwarded step from another tenant (by deployment and by device), and the chain shows the refusal", async () => {
    for (const to of [{ device: b.deviceId, deployment: "b-dep", module: "math", function: "half" }, { device: b.deviceId, module: "math", function: "half" }]) {
      const jobId = await chainedCallOnA(to.deployment ? "a-raw" : "shared", to);
      expect(await jobsOn(b.deviceId)).not.toContain(await chainJobId(b.deviceId, jobId));
      const view = (await call("GET", `/v1/jobs/${jobId}`, { token: a.admin })).body;
      expect(view.chain.steps.at(-1)).toMatchObject({ job: null, state: "ERROR" });
      expect(view.chain.steps.at(-1).error).toMatch(/refused/);
    }
    expect(await jobsOn(b.deviceId)).toEqual([]);
  });

  it("the job view of a chain does not show a step on another tenant's device", async () => {
    const jobId = await chainedCallOnA("a-view", { device: a.deviceId, module: "math", function: "add32" });
    const bJob = (await call("POST", "/v1/jobs", { token: b.admin, json: { device: b.deviceId, module: digest, function: "add32", args: [1, 2] } })).body.id as string;
    // As if the step had been handed to B's device: the link the chain view follows.
    await runInDurableObject(device(a.deviceId), (_o, state) => state.storage.sql.exec("UPDATE jobs SET next = ? WHERE id = ?", JSON.stringify({ job: bJob }), jobId));
    const view = (await call("GET", `/v1/jobs/${jobId}`, { token: a.admin })).body;
    expect(JSON.stringify(view.chain)).not.toContain(bJob);
    expect(view.chain.steps.map((s: { device: string | null }) => s.device)).not.toContain(b.deviceId);
  });

  it("refuses a wasmiot manifest whose `to` URL names another tenant's facade device (path or label host)", async () => {
    const label = (await call("POST", `/v1/devices/${b.deviceId}/wasmiot-facade`, { token: b.admin })).body.label as string;
    const ownOther = (await call("POST", "/v1/devices/register", { token: (await call("POST", "/v1/keys", { token: a.admin, json: { role: "register" } })).body.key, json: { name: "a2", description: DESCRIPTION } })).body.deviceId as string;
    const withTo = (url: string) => {
      const m = structuredClone(chainManifest) as typeof chainManifest;
      m.instructions.modules.fibo.fibo.to.url = url;
      m.instructions.modules.fibo.fibo.to.path = "/shared/modules/math/half";
      return m;
    };
    for (const url of [`https://wasmvisor.test/wasmiot/${b.deviceId}`, `https://${label}.wasmiot.test`]) {
      const res = await call("POST", `/wasmiot/${a.deviceId}/deploy`, { token: a.admin, json: withTo(url) });
      expect(res.status, url).toBe(422);
      expect(res.body.detail, url).toMatch(/forwards to .* names no device here/);
    }
    // The same manifest naming a device of A's own passes the chain check (it fails later, fetching the test's module URL).
    const own = await call("POST", `/wasmiot/${a.deviceId}/deploy`, { token: a.admin, json: withTo(`https://wasmvisor.test/wasmiot/${ownOther}`) });
    expect(own.body.detail).not.toMatch(/forwards to/);
  });
});

describe("every object method the Worker calls refuses another tenant's namespace", () => {
  it("device object: reads, writes and calls answer not-found for another namespace, and work for its own and for admin-all", async () => {
    const before = await jobsOn(b.deviceId);
    const bJob = (await call("POST", "/v1/jobs", { token: b.admin, json: { device: b.deviceId, module: digest, function: "add32", args: [1, 2], start: false } })).body.id as string;
    const dev = device(b.deviceId);
    const spec = { device: b.deviceId, module: digest, function: "add32", args: [1, 2], timeoutMs: 1000, maxAttempts: 1, priority: 0, start: false };
    const refused = {
      view: await dev.view(a.ns),
      setDrained: await dev.setDrained(a.ns, true),
      agentLogs: await dev.agentLogs(a.ns, 10),
      submit: await dev.submit(a.ns, spec as never),
      submitBatch: await dev.submitBatch(a.ns, [{ jobId: `${b.deviceId}-aaaaaaaaaaaaaaab`, spec: spec as never, requires: [] }]),
      start: await dev.start(a.ns, bJob),
      getJob: await dev.getJob(a.ns, bJob),
      awaitResult: await dev.awaitResult(a.ns, bJob, 0),
      logs: await dev.logs(a.ns, bJob),
      followLogs: await dev.followLogs(a.ns, bJob),
      cancel: await dev.cancel(a.ns, bJob),
      remove: await dev.remove(a.ns, bJob),
      rotateCredential: await dev.rotateCredential(a.ns, "0".repeat(64)),
      putDeployment: await dev.putDeployment(a.ns, { deployment: "x", generation: 1, source: "signed", modules: [] }),
      removeDeployment: await dev.removeDeployment(a.ns, "b-dep", 99),
      call: await dev.call(a.ns, `${b.deviceId}-aaaaaaaaaaaaaaac`, { deployment: "b-dep", module: "math", function: "half", method: "GET", query: { x: "1" }, body: {}, files: [], prev: null }),
    };
    for (const [method, out] of Object.entries(refused)) expect(out, method).toMatchObject({ ok: false, problem: "not-found" });
    expect(await dev.exists(a.ns)).toBe(false);
    expect(await dev.deploymentStatus(a.ns, "b-dep")).toBeNull();
    expect(await dev.facadeInfo(a.ns)).toBeNull();
    expect(await dev.calls(a.ns, 10)).toEqual([]);
    expect(await dev.latestOutput(a.ns, "math", null, "x")).toBeNull();
    expect((await jobsOn(b.deviceId)).sort()).toEqual([...before, bJob].sort());
    // Nothing changed, and the rightful callers still get through.
    for (const ns of [b.ns, null]) {
      expect(await dev.getJob(ns, bJob)).toMatchObject({ ok: true, value: { state: "CREATED" } });
      expect(await dev.view(ns)).toMatchObject({ ok: true, value: { drained: false } });
    }
    expect((await poll(b.credential)).status).toBe(200);
  });

  it("deployment object: another namespace reads nothing, removes nothing and cannot take it over", async () => {
    const dep = deploymentStub(env, b.ns, "b-dep");
    expect(await dep.record(a.ns)).toBeNull();
    expect(await dep.remove(a.ns, "all")).toMatchObject({ devices: [] });
    expect(await dep.put({ id: "b-dep", namespace: a.ns, source: "signed", signedBy: null }, [], "all")).toBeNull();
    expect(await dep.record(b.ns)).toMatchObject({ namespace: b.ns, placements: [{ device: b.deviceId }] });
    expect(await dep.record(null)).toMatchObject({ namespace: b.ns });
  });
});
