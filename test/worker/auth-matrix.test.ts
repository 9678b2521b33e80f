/**
 * Every route against every role. Routes come from the OpenAPI document, where each
 * declares its roles (x-roles): a new route without an auth decision fails here.
 */
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { call, registerDevice, uploadModule, ADMIN } from "./helpers.js";

type Operation = { "x-roles"?: string[] };
const ROLES = ["anonymous", "admin", "user", "register", "metrics", "device"] as const;
let tokens: Record<(typeof ROLES)[number], string | null>;
let doc: { paths: Record<string, Record<string, Operation>> };
let deviceId: string;
let digest: string;
/** Device credentials that must never act: made up, rotated away, and one device's secret and MAC under another's id. */
let strangers: Record<"forged" | "forged without a MAC" | "revoked" | "swapped", string>;
/** A genuine credential of another device: it acts only for its own device, never on the matrix device's job. */
let otherDevice: string;

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";
const randomPart = () => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32)))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

beforeAll(async () => {
  const user = (await call("POST", "/v1/keys", { json: { role: "user" } })).body.key;
  const register = (await call("POST", "/v1/keys", { json: { role: "register" } })).body.key;
  const metrics = (await call("POST", "/v1/keys", { json: { role: "metrics" } })).body.key;
  const dev = await registerDevice("matrix");
  deviceId = dev.deviceId;
  digest = await uploadModule("math");
  tokens = { anonymous: null, admin: ADMIN, user, register, metrics, device: dev.credential };
  const madeUpId = "d" + Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => BASE32[b & 31]).join("");
  const rotated = await registerDevice("matrix-rotated");
  expect((await call("POST", `/v1/devices/${rotated.deviceId}/credential`)).status).toBe(201);
  rotatable = (await registerDevice("matrix-rotatable")).deviceId;
  const other = await registerDevice("matrix-other");
  otherDevice = other.credential;
  const [, , secret, mac] = other.credential.split(".");
  strangers = { forged: `wvd.${madeUpId}.${randomPart()}.${randomPart()}`, "forged without a MAC": `wvd.${madeUpId}.${randomPart()}`, revoked: rotated.credential, swapped: `wvd.${deviceId}.${secret}.${mac}` };
  doc = (await call("GET", "/openapi.json", { token: null })).body;
});

/** A device whose credential the matrix may rotate (rotating the matrix device's own would revoke `tokens.device`). */
let rotatable: string;

function concrete(path: string) {
  const id = path.startsWith("/v1/jobs") ? `${deviceId}-aaaaaaaaaaaaaaaa` : path.startsWith("/v1/keys") ? "knotakeyatall" : path.endsWith("/credential") ? rotatable : deviceId;
  return path
    .replace("{id}", id)
    .replace("{digest}", digest);
}

describe("the auth matrix", { timeout: 60_000 }, () => {
  it("covers every operation, and each declares its roles", () => {
    const ops = Object.entries(doc.paths).flatMap(([p, methods]) => Object.entries(methods).map(([m, op]) => ({ p, m, op })));
    expect(ops.length).toBeGreaterThan(15);
    for (const { p, m, op } of ops) expect(op["x-roles"], `${m.toUpperCase()} ${p}`).toBeInstanceOf(Array);
  });

  it("answers 401 without a credential, 403 for roles not allowed, and lets allowed roles through", async () => {
    const rows: string[] = [];
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        const allowed = op["x-roles"]!;
        for (const role of ROLES) {
          const res = await call(method.toUpperCase(), `${concrete(path)}?wait=0`, { token: tokens[role], json: method === "get" || method === "delete" ? undefined : {} });
          const expected = role === "anonymous" ? "401" : allowed.includes(role) ? "allowed" : "403";
          const got = res.status === 401 || res.status === 403 ? String(res.status) : "allowed";
          if (got !== expected) rows.push(`${method.toUpperCase()} ${path} as ${role}: expected ${expected}, got ${res.status}`);
          expect(res.status, `${method} ${path} as ${role}`).toBeLessThan(500);
        }
      }
    }
    expect(rows).toEqual([]);
  });

  it("never answers 2xx to a forged, revoked or swapped device credential, on any route", async () => {
    const rows: string[] = [];
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const method of Object.keys(methods)) {
        for (const [kind, token] of Object.entries(strangers)) {
          const res = await call(method.toUpperCase(), `${concrete(path)}?wait=0`, { token, json: method === "get" || method === "delete" ? undefined : { health: {}, runningJobs: [] } });
          if (res.status !== 401) rows.push(`${method.toUpperCase()} ${path} with a ${kind} credential: ${res.status}`);
        }
      }
    }
    expect(rows).toEqual([]);
  });

  it("never answers 2xx to another device's credential on a route that names this device's job or device", async () => {
    const rows: string[] = [];
    for (const [path, methods] of Object.entries(doc.paths)) {
      if (!path.includes("{id}")) continue;
      for (const method of Object.keys(methods)) {
        const res = await call(method.toUpperCase(), `${concrete(path)}?wait=0`, { token: otherDevice, json: method === "get" || method === "delete" ? undefined : {}, headersExtra: { "x-lease-token": "aaaaaaaaaaaaaaaa" } });
        if (res.status < 300) rows.push(`${method.toUpperCase()} ${path} with another device's credential: ${res.status}`);
      }
    }
    expect(rows).toEqual([]);
  });
});

// Each property makes dozens of real requests: they get a time budget, and assert only statuses.
describe("request validation never answers 5xx", { timeout: 60_000 }, () => {
  const json = fc.jsonValue({ maxDepth: 3 });
  it.each(["/v1/jobs", "/v1/jobs/batch", "/v1/devices/register", "/v1/keys", "/v1/agent/results", "/v1/agent/acks", "/v1/agent/heartbeat"])(
    "POST %s with arbitrary JSON",
    async (path) => {
      await fc.assert(
        fc.asyncProperty(json, async (body) => {
          const token = path.startsWith("/v1/agent") ? tokens.device : ADMIN;
          const res = await call("POST", path, { token, json: body });
          expect(res.status).toBeGreaterThanOrEqual(400);
          expect(res.status).toBeLessThan(500);
          expect(res.type).toBe("application/problem+json");
        }),
        { numRuns: 40 },
      );
    },
  );

  it("POST /v1/jobs with arbitrary field values next to valid ones", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ function: fc.string(), args: fc.array(fc.oneof(fc.string(), fc.double(), fc.boolean(), fc.integer())), timeoutMs: fc.oneof(fc.integer(), fc.double()), priority: fc.integer() }, { requiredKeys: [] }),
        async (extra) => {
          const res = await call("POST", "/v1/jobs", { json: { device: deviceId, module: digest, function: "add32", args: [1, 2], ...extra } });
          expect(res.status).toBeLessThan(500);
        },
      ),
      { numRuns: 60 },
    );
  });
});
