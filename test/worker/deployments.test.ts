/**
 * Signed deployments inside workerd: every way a signature or a manifest can be
 * wrong is a 4xx and deploys nothing anywhere; a good one becomes each device's
 * desired state; calls are checked against the function's description by name.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { env } from "cloudflare:test";
import { call, registerDevice, uploadModule } from "./helpers.js";

type Key = { privateKey: CryptoKey; kid: string };
let ed: Key;
let devA: { deviceId: string; credential: string };
let devB: { deviceId: string; credential: string };
let digest: string;

async function registerKey(): Promise<Key> {
  const pair = await generateKeyPair("EdDSA", { extractable: true });
  const res = await call("POST", "/v1/orchestrator-keys", { json: { jwk: await exportJWK(pair.publicKey), label: "deployer" } });
  expect(res.status).toBe(201);
  return { privateKey: pair.privateKey, kid: res.body.kid as string };
}

function sign(key: Key, deployment: unknown, opts: { exp?: string | number; jti?: string | null; iat?: number } = {}) {
  let t = new SignJWT({ deployment }).setProtectedHeader({ alg: "EdDSA", kid: key.kid });
  t = opts.iat !== undefined ? t.setIssuedAt(opts.iat) : t.setIssuedAt();
  t = t.setExpirationTime(opts.exp ?? "5m");
  if (opts.jti !== null) t = t.setJti(opts.jti ?? crypto.randomUUID());
  return t.sign(key.privateKey);
}

const deploy = (token: string) => call("POST", "/v1/deployments", { body: token, type: "application/jose" });

function manifest(id: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    modules: [
      {
        name: "math",
        digest,
        devices: [devA.deviceId, devB.deviceId],
        functions: {
          add32: { params: [{ name: "a", type: "integer" }, { name: "b", type: "integer" }], result: "integer" },
          half: { params: [{ name: "x", type: "number", in: "body" }], result: "number" },
        },
        mounts: [{ name: "config.txt", base64: btoa("threshold=3\n") }],
      },
    ],
    ...extra,
  };
}

const desired = async (dev: { credential: string }) => (await call("GET", "/v1/agent/deployments", { token: dev.credential })).body as { version: number; deployments: { deployment: string }[] };

beforeAll(async () => {
  devA = await registerDevice("dep-a");
  devB = await registerDevice("dep-b");
  digest = await uploadModule("math");
  ed = await registerKey();
});

describe("signed deployments", () => {
  it("refuses every bad token or manifest with a 4xx, deploying nothing anywhere", async () => {
    const stranger = { privateKey: (await generateKeyPair("EdDSA")).privateKey, kid: ed.kid };
    const good = await sign(ed, manifest("never"));
    const [h, p, s] = good.split(".");
    const payload = JSON.parse(atob(p!.replace(/-/g, "+").replace(/_/g, "/")));
    const b64url = (v: unknown) => btoa(JSON.stringify(v)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
    const altered = `${h}.${b64url({ ...payload, deployment: { ...payload.deployment, id: "never" } , extra: 1 })}.${s}`;
    const revoked = await registerKey();
    const revokedToken = await sign(revoked, manifest("never"));
    expect((await call("DELETE", `/v1/orchestrator-keys/${revoked.kid}`)).status).toBe(200);
    const unknownDevice = manifest("never");
    unknownDevice.modules[0]!.devices = [devA.deviceId, "daaaaaaaaaaaaaaaa"];
    const missingModule = manifest("never");
    missingModule.modules[0]!.digest = "0".repeat(64);
    const wrongArity = manifest("never");
    (wrongArity.modules[0]!.functions as Record<string, unknown>).add32 = { params: [{ name: "a", type: "integer" }] };
    const noExport = manifest("never");
    (noExport.modules[0]!.functions as Record<string, unknown>).nope = { params: [] };
    const badChain = manifest("never");
    (badChain.modules[0]!.functions.add32 as Record<string, unknown>).to = { device: devA.deviceId, module: "other", function: "f" };
    const wrongSize = manifest("never");
    (wrongSize.modules[0] as Record<string, unknown>).size = 12345;
    const outside = manifest("never");
    (outside.modules[0]!.functions.add32 as Record<string, unknown>).to = { url: "http://elsewhere.example/x/modules/y/z" };

    const cases: [string, Promise<string> | string, number][] = [
      ["not a JWS", "hello", 401],
      ["unknown kid", sign({ ...ed, kid: "nobody" }, manifest("never")), 401],
      ["signed by another key", sign(stranger, manifest("never")), 401],
      ["altered payload", altered, 401],
      ["expired", sign(ed, manifest("never"), { iat: Math.floor(Date.now() / 1000) - 600, exp: Math.floor(Date.now() / 1000) - 300 }), 401],
      ["no jti", sign(ed, manifest("never"), { jti: null }), 401],
      ["revoked key", revokedToken, 401],
      ["malformed manifest", sign(ed, { id: "never", modules: [] }), 400],
      ["a file name with a directory", sign(ed, { ...manifest("never"), modules: [{ ...manifest("never").modules[0], mounts: [{ name: "../x", base64: "" }] }] }), 400],
      ["an unknown device among the targets", sign(ed, unknownDevice), 422],
      ["a module never uploaded and no url", sign(ed, missingModule), 422],
      ["parameters that do not fit the export", sign(ed, wrongArity), 422],
      ["a function the module does not export", sign(ed, noExport), 422],
      ["a chain to a function not placed", sign(ed, badChain), 422],
      ["a chain outside while forwarding outside is off", sign(ed, outside), 422],
      ["a size that is not the module's", sign(ed, wrongSize), 422],
    ];
    for (const [what, token, status] of cases) {
      const res = await deploy(await token);
      expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(status);
      expect(res.type, what).toBe("application/problem+json");
    }
    expect((await call("GET", "/v1/deployments/never")).status).toBe(404);
    for (const dev of [devA, devB]) expect((await desired(dev)).deployments.map((d) => d.deployment)).not.toContain("never");
  });

  it("refuses a replayed jti", async () => {
    const token = await sign(ed, manifest("replay-me"));
    expect((await deploy(token)).status).toBe(201);
    const again = await deploy(token);
    expect(again.status).toBe(401);
    expect(again.body.type).toBe("urn:wasmvisor:problem:replayed");
  });

  it("records a good manifest as each target device's desired state, pending until the agents report", async () => {
    const before = (await desired(devA)).version;
    const res = await deploy(await sign(ed, manifest("calc")));
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ id: "calc", source: "signed", signedBy: ed.kid, state: "pending", modules: [{ name: "math", digest, functions: ["add32", "half"] }] });
    expect(res.body.devices.map((d: { device: string }) => d.device).sort()).toEqual([devA.deviceId, devB.deviceId].sort());

    const a = await desired(devA);
    expect(a.version).toBeGreaterThan(before);
    const part = (a.deployments as unknown as { deployment: string; modules: { mounts: { name: string; size: number }[] }[] }[]).find((d) => d.deployment === "calc")!;
    expect(part.modules[0]!.mounts).toEqual([expect.objectContaining({ name: "config.txt", size: 12 })]);
    // Fetching the desired state marks it applying; the agent's report makes it active or failed.
    const gen = res.body.devices[0].generation as number;
    await call("POST", "/v1/agent/deployments/status", { token: devA.credential, json: { states: [{ deployment: "calc", generation: gen, state: "active", reason: null }] } });
    await call("POST", "/v1/agent/deployments/status", { token: devB.credential, json: { states: [{ deployment: "calc", generation: gen, state: "failed", reason: "disk full" }] } });
    const shown = (await call("GET", "/v1/deployments/calc")).body;
    expect(shown.state).toBe("failed");
    expect(shown.devices.find((d: { device: string }) => d.device === devB.deviceId)).toMatchObject({ state: "failed", reason: "disk full" });
    expect(shown.devices.find((d: { device: string }) => d.device === devA.deviceId)).toMatchObject({ state: "active" });
    const listed = (await call("GET", "/v1/deployments")).body.deployments as { id: string; source: string }[];
    expect(listed.find((d) => d.id === "calc")).toMatchObject({ id: "calc", source: "signed", namespace: "default" });
    expect(listed.map((d) => d.id)).not.toContain("never");
    // Another tenant sees neither the listing entry nor the deployment, and cannot call it.
    const other = (await call("POST", "/v1/keys", { json: { role: "user", namespace: "other-tenant" } })).body.key;
    expect((await call("GET", "/v1/deployments", { token: other })).body.deployments).toEqual([]);
    expect((await call("GET", "/v1/deployments/calc", { token: other })).status).toBe(404);
    expect((await call("GET", `/v1/deployments/calc/modules/math/add32?a=1&b=2`, { token: other })).status).toBe(404);
  });

  it("lets a device fetch only its own deployments' data files", async () => {
    const part = (await desired(devA)).deployments.find((d) => d.deployment === "calc") as unknown as { modules: { mounts: { digest: string }[] }[] };
    const fileDigest = part.modules[0]!.mounts[0]!.digest;
    const mine = await call("GET", `/v1/agent/deployments/calc/data/${fileDigest}`, { token: devA.credential });
    expect(mine.status).toBe(200);
    expect(mine.body).toBe("threshold=3\n");
    const other = await registerDevice("dep-c");
    expect((await call("GET", `/v1/agent/deployments/calc/data/${fileDigest}`, { token: other.credential })).status).toBe(404);
  });

  it("checks calls by parameter name and type, answering 202 with the job", async () => {
    const base = "/v1/deployments/calc/modules/math";
    const okCall = await call("GET", `${base}/add32?b=3&a=10&device=${devA.deviceId}`);
    expect(okCall.status).toBe(202);
    expect(okCall.body.device).toBe(devA.deviceId);
    const job = (await call("GET", okCall.body.links.self)).body;
    expect(job).toMatchObject({ state: "QUEUED", function: "add32", args: [10, 3], call: { deployment: "calc", module: "math", instance: "fresh" } });

    const bad: [string, string, string | RegExp][] = [
      ["GET", `${base}/add32?a=1`, /missing required parameter b/],
      ["GET", `${base}/add32?a=1&b=x`, /parameter b must be an integer/],
      ["GET", `${base}/add32?a=1&b=2&c=3`, /unknown parameter c/],
      ["GET", `${base}/nope`, /not described/],
      ["GET", "/v1/deployments/calc/modules/other/add32?a=1&b=2", /module other not found/],
      ["GET", "/v1/deployments/none/modules/math/add32?a=1&b=2", /does not exist/],
    ];
    for (const [method, path, detail] of bad) {
      const res = await call(method, path);
      expect(res.status, path).toBeGreaterThanOrEqual(400);
      expect(res.status, path).toBeLessThan(500);
      expect(res.body.detail, path).toMatch(detail);
    }
    // No agent runs here: a waited call that does not end in time answers 202, saying the wait was applied.
    const waited = await call("GET", `${base}/add32?a=1&b=2&device=${devA.deviceId}`, { headersExtra: { prefer: "wait=1" } });
    expect(waited.status).toBe(202);
    expect(waited.headers.get("preference-applied")).toBe("wait=1");
    const body = await call("POST", `${base}/half?device=${devA.deviceId}`, { json: { x: 5 } });
    expect(body.status).toBe(202);
    expect((await call("GET", body.body.links.self)).body.args).toEqual([5]);
    const notObject = await call("POST", `${base}/half?device=${devA.deviceId}`, { json: [5] });
    expect(notObject.status).toBe(400);
  });

  it("undeploys: gone from every device, calls still queued are canceled", async () => {
    const queued = await call("GET", `/v1/deployments/calc/modules/math/add32?a=1&b=2&device=${devB.deviceId}`);
    expect(queued.status).toBe(202);
    const res = await call("DELETE", "/v1/deployments/calc");
    expect(res.status).toBe(200);
    expect(res.body.devices.sort()).toEqual([devA.deviceId, devB.deviceId].sort());
    expect((await call("GET", queued.body.links.self)).body).toMatchObject({ state: "CANCELED", error: { kind: "canceled" } });
    for (const dev of [devA, devB]) expect((await desired(dev)).deployments.map((d) => d.deployment)).not.toContain("calc");
    expect((await call("GET", "/v1/deployments/calc")).status).toBe(404);
    expect((await call("DELETE", "/v1/deployments/calc")).status).toBe(404);
    expect((await call("GET", "/v1/deployments")).body.deployments.map((d: { id: string }) => d.id)).not.toContain("calc");
  });
});

describe("generations", () => {
  const deploymentObject = (id: string) => env.DEPLOYMENTS.get(env.DEPLOYMENTS.idFromName(`default/${id}`));
  const deviceObject = (deviceId: string) => env.DEVICES.get(env.DEVICES.idFromName(deviceId));

  it("leave every device on the newest generation when redeploys of one deployment race", async () => {
    let previous = 0;
    for (let round = 0; round < 4; round++) {
      const tokens = await Promise.all([0, 1, 2, 3].map(() => sign(ed, manifest("racing"))));
      const answers = await Promise.all(tokens.map(deploy));
      for (const a of answers) expect(a.status).toBe(201);
      const newest = (await deploymentObject("racing").record(null))!.generation;
      expect(newest).toBe(previous + tokens.length);
      for (const dev of [devA, devB]) expect((await deviceObject(dev.deviceId).deploymentStatus(null, "racing"))?.generation).toBe(newest);
      const listed = (await call("GET", "/v1/deployments?limit=500")).body.deployments.find((d: { id: string }) => d.id === "racing");
      expect(listed.generation).toBe(newest);
      previous = newest;
    }
  });

  it("a device object refuses to replace a deployment's generation with an older one", async () => {
    const device = deviceObject(devA.deviceId);
    const part = { deployment: "monotonic", source: "signed" as const, modules: [] };
    expect(await device.putDeployment(null, { ...part, generation: 5 })).toMatchObject({ ok: true, value: { generation: 5 } });
    const older = await device.putDeployment(null, { ...part, generation: 4 });
    expect(older).toMatchObject({ ok: false, problem: "conflict" });
    expect((await device.deploymentStatus(null, "monotonic"))?.generation).toBe(5);
    // An undeploy decided at an older generation does not remove a newer one either.
    expect(await device.removeDeployment(null, "monotonic", 4)).toMatchObject({ ok: false, problem: "conflict" });
    expect((await device.deploymentStatus(null, "monotonic"))?.generation).toBe(5);
    expect(await device.putDeployment(null, { ...part, generation: 5 })).toMatchObject({ ok: true }); // a retry of the same generation is fine
    expect(await device.removeDeployment(null, "monotonic", 6)).toMatchObject({ ok: true });
    // ... and a late part of a generation already undeployed does not come back.
    expect(await device.putDeployment(null, { ...part, generation: 5 })).toMatchObject({ ok: false, problem: "conflict" });
    expect(await device.deploymentStatus(null, "monotonic")).toBeNull();
  });
});

describe("the deployment listing", () => {
  it("takes only newer generations, and a late publish does not bring back an undeployed one", async () => {
    const registry = env.REGISTRY.get(env.REGISTRY.idFromName("global"));
    const listed = async () => (await registry.listDeployments("default", 500, null)).deployments.find((d) => d.id === "late-publish");
    await registry.upsertDeployment("default", "late-publish", "signed", 5);
    await registry.upsertDeployment("default", "late-publish", "signed", 4);
    expect((await listed())?.generation).toBe(5);
    await registry.dropDeployment("default", "late-publish", 6);
    await registry.upsertDeployment("default", "late-publish", "signed", 5);
    expect(await listed()).toBeUndefined();
    await registry.upsertDeployment("default", "late-publish", "signed", 7); // a redeploy after the undeploy
    expect((await listed())?.generation).toBe(7);
  });
});
