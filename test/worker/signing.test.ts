/** Signed jobs: every way a signature can be wrong is refused, and nothing is queued. */
import { beforeAll, describe, expect, it } from "vitest";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { call, DESCRIPTION, uploadModule } from "./helpers.js";

let deviceId: string;
let digest: string;
let ed: { privateKey: CryptoKey; kid: string };
let es: { privateKey: CryptoKey; kid: string };
let user: string;

async function registerKey(alg: "EdDSA" | "ES256", kid?: string, namespace?: string) {
  const pair = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(pair.publicKey)), ...(kid ? { kid } : {}) };
  const res = await call("POST", "/v1/orchestrator-keys", { json: { jwk, label: alg, ...(namespace ? { namespace } : {}) } });
  expect(res.status).toBe(201);
  return { privateKey: pair.privateKey, kid: res.body.kid as string };
}

function sign(key: { privateKey: CryptoKey; kid: string }, job: unknown, opts: { alg?: string; exp?: string | number; jti?: string | null; iat?: number } = {}) {
  let t = new SignJWT({ job }).setProtectedHeader({ alg: opts.alg ?? "EdDSA", kid: key.kid });
  t = opts.iat !== undefined ? t.setIssuedAt(opts.iat) : t.setIssuedAt();
  t = t.setExpirationTime(opts.exp ?? "5m");
  if (opts.jti !== null) t = t.setJti(opts.jti ?? crypto.randomUUID());
  return t.sign(key.privateKey);
}

const submitSigned = (token: string, as = user) => call("POST", "/v1/jobs/signed", { token: as, body: token, type: "application/jose" });
const queued = async () => (await call("GET", `/v1/devices/${deviceId}`)).body.queue.queued as number;
const job = () => ({ device: deviceId, module: digest, function: "add32", args: [1, 2] });

beforeAll(async () => {
  const reg = (await call("POST", "/v1/keys", { json: { role: "register", namespace: "signed" } })).body.key;
  deviceId = (await call("POST", "/v1/devices/register", { token: reg, json: { description: DESCRIPTION } })).body.deviceId;
  digest = await uploadModule("math");
  user = (await call("POST", "/v1/keys", { json: { role: "user", namespace: "signed" } })).body.key;
  ed = await registerKey("EdDSA");
  es = await registerKey("ES256", "orchestrator-es");
  expect((await call("PUT", "/v1/namespaces/signed/settings", { json: { requireSignedJobs: true } })).body).toMatchObject({ requireSignedJobs: true });
});

describe("signed jobs", () => {
  it("accepts a job signed with a registered Ed25519 or P-256 key", async () => {
    const before = await queued();
    expect((await submitSigned(await sign(ed, job()))).status).toBe(202);
    expect((await submitSigned(await sign(es, job(), { alg: "ES256" }))).status).toBe(202);
    expect(await queued()).toBe(before + 2);
  });

  it("refuses every bad token with 401/403 and queues nothing", async () => {
    const before = await queued();
    const stranger = { privateKey: (await generateKeyPair("EdDSA")).privateKey, kid: ed.kid };
    const valid = await sign(ed, job());
    const [h, p, s] = valid.split(".");
    const altered = `${h}.${btoa(JSON.stringify({ ...JSON.parse(atob(p!.replace(/-/g, "+").replace(/_/g, "/"))), job: { ...job(), args: [9, 9] } })).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_")}.${s}`;
    const cases: [string, Promise<string> | string, number][] = [
      ["unsigned JSON where signatures are required", "", 403],
      ["not a JWS", "hello", 401],
      ["unknown kid", sign({ ...ed, kid: "nobody" }, job()), 401],
      ["signed by another key", sign(stranger, job()), 401],
      ["altered payload", altered, 401],
      ["expired", sign(ed, job(), { iat: Math.floor(Date.now() / 1000) - 600, exp: Math.floor(Date.now() / 1000) - 300 }), 401],
      ["no jti", sign(ed, job(), { jti: null }), 401],
      ["lifetime over an hour", sign(ed, job(), { exp: "2h" }), 401],
      ["wrong alg for the key", sign(es, job(), { alg: "ES256" }).then((t) => t.replace(/^[^.]+/, btoa(JSON.stringify({ alg: "EdDSA", kid: es.kid })).replace(/=+$/, ""))), 401],
    ];
    for (const [what, token, status] of cases) {
      const res = what.startsWith("unsigned")
        ? await call("POST", "/v1/jobs", { token: user, json: job() })
        : await submitSigned(await token);
      expect(res.status, what).toBe(status);
      expect(res.type, what).toBe("application/problem+json");
    }
    expect(await queued()).toBe(before);
  });

  it("accepts a jti once", async () => {
    const token = await sign(ed, job(), { jti: "once-only" });
    expect((await submitSigned(token)).status).toBe(202);
    const replay = await submitSigned(token);
    expect(replay.status).toBe(401);
    expect(replay.body.type).toBe("urn:wasmvisor:problem:replayed");
  });

  it("stops accepting a revoked key's signatures", async () => {
    const k = await registerKey("EdDSA");
    expect((await submitSigned(await sign(k, job()))).status).toBe(202);
    expect((await call("DELETE", `/v1/orchestrator-keys/${k.kid}`)).body.revokedAt).not.toBeNull();
    expect((await submitSigned(await sign(k, job()))).status).toBe(401);
  });

  it("refuses a key scoped to another namespace, and private keys at registration", async () => {
    const other = await registerKey("EdDSA", undefined, "elsewhere");
    expect((await submitSigned(await sign(other, job()))).status).toBe(403);
    const priv = await exportJWK((await generateKeyPair("EdDSA", { extractable: true })).privateKey);
    expect((await call("POST", "/v1/orchestrator-keys", { json: { jwk: priv } })).status).toBe(400);
  });

  it("lets unsigned jobs through where signatures are not required", async () => {
    await call("PUT", "/v1/namespaces/signed/settings", { json: { requireSignedJobs: false } });
    expect((await call("POST", "/v1/jobs", { token: user, json: job() })).status).toBe(202);
    await call("PUT", "/v1/namespaces/signed/settings", { json: { requireSignedJobs: true } });
  });
});
