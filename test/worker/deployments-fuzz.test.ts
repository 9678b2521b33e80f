/** Deployments, calls and the wasmiot facade never answer 5xx to a client's mistake, whatever it sends. */
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { call, registerDevice, uploadModule } from "./helpers.js";

let device: string;
let digest: string;
let key: { privateKey: CryptoKey; kid: string };

const signed = (deployment: unknown) =>
  new SignJWT({ deployment }).setProtectedHeader({ alg: "EdDSA", kid: key.kid }).setIssuedAt().setExpirationTime("5m").setJti(crypto.randomUUID()).sign(key.privateKey);

beforeAll(async () => {
  device = (await registerDevice("fuzz")).deviceId;
  digest = await uploadModule("math");
  const pair = await generateKeyPair("EdDSA", { extractable: true });
  key = { privateKey: pair.privateKey, kid: (await call("POST", "/v1/orchestrator-keys", { json: { jwk: await exportJWK(pair.publicKey) } })).body.kid };
  const manifest = { id: "fuzzed", modules: [{ name: "math", digest, devices: [device], functions: { add32: { params: [{ name: "a", type: "integer" }, { name: "b", type: "integer" }] } } }] };
  expect((await call("POST", "/v1/deployments", { body: await signed(manifest), type: "application/jose" })).status).toBe(201);
});

const clientError = (res: { status: number; type: string | null }) => {
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect(res.status).toBeLessThan(500);
  expect(res.type).toMatch(/application\/problem\+json/);
};

describe("deployment input never answers 5xx", { timeout: 60_000 }, () => {
  it("POST /v1/deployments with arbitrary text", async () => {
    await fc.assert(fc.asyncProperty(fc.string(), async (body) => clientError(await call("POST", "/v1/deployments", { body, type: "application/jose" }))), { numRuns: 40 });
  });

  it("POST /v1/deployments with a valid signature over an arbitrary manifest", async () => {
    const field = fc.oneof(fc.string(), fc.integer(), fc.constant(digest), fc.constant(device), fc.jsonValue({ maxDepth: 2 }));
    const manifest = fc.record(
      { id: fc.oneof(fc.string(), fc.constant("fz")), modules: fc.array(fc.record({ name: field, digest: field, devices: fc.oneof(fc.array(field), fc.constant([device])), functions: fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 })), mounts: fc.array(fc.jsonValue({ maxDepth: 1 })) }, { requiredKeys: [] }), { maxLength: 3 }) },
      { requiredKeys: [] },
    );
    await fc.assert(fc.asyncProperty(manifest, async (m) => clientError(await call("POST", "/v1/deployments", { body: await signed(m), type: "application/jose" }))), { numRuns: 60 });
  });

  it("calls with arbitrary parameters and bodies", async () => {
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.string({ minLength: 1 }), fc.string()), fc.jsonValue({ maxDepth: 2 }), async (query, body) => {
        const qs = new URLSearchParams({ ...query, device }).toString();
        const res = await call("POST", `/v1/deployments/fuzzed/modules/math/add32?${qs}`, { json: body });
        expect(res.status).toBeLessThan(500);
      }),
      { numRuns: 60 },
    );
  });

  it("the wasmiot facade's deploy with arbitrary JSON", async () => {
    await fc.assert(fc.asyncProperty(fc.jsonValue({ maxDepth: 3 }), async (body) => clientError(await call("POST", `/wasmiot/${device}/deploy`, { json: body }))), { numRuns: 60 });
  });

  it("the wasmiot facade's routes with arbitrary paths", async () => {
    const segment = fc.string({ minLength: 1, maxLength: 12 }).map(encodeURIComponent);
    await fc.assert(
      fc.asyncProperty(fc.array(segment, { minLength: 1, maxLength: 5 }), fc.constantFrom("GET", "POST", "DELETE"), async (parts, method) => {
        const res = await call(method, `/wasmiot/${device}/${parts.join("/")}`);
        expect(res.status).toBeLessThan(500);
      }),
      { numRuns: 80 },
    );
  });
});
