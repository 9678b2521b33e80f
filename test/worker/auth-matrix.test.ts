/**
 * Every route against every role. Routes come from the OpenAPI document, where each
 * declares its roles (x-roles): a new route without an auth decision fails here.
 */
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { call, registerDevice, routeWalk, ADMIN } from "./helpers.js";

type Operation = { "x-roles"?: string[]; parameters?: { name: string; in: string }[] };
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

/** A concrete path for each path template (routeWalk). */
let concrete: (template: string) => string;

beforeAll(async () => {
  const walk = await routeWalk("matrix");
  ({ deviceId, digest, concrete } = walk);
  const metrics = (await call("POST", "/v1/keys", { json: { role: "metrics" } })).body.key;
  tokens = { anonymous: null, ...walk.tokens, metrics };
  const madeUpId = "d" + Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => BASE32[b & 31]).join("");
  const rotated = await registerDevice("matrix-rotated");
  expect((await call("POST", `/v1/devices/${rotated.deviceId}/credential`)).status).toBe(201);
  const other = await registerDevice("matrix-other");
  otherDevice = other.credential;
  const [, , secret, mac] = other.credential.split(".");
  strangers = { forged: `wvd.${madeUpId}.${randomPart()}.${randomPart()}`, "forged without a MAC": `wvd.${madeUpId}.${randomPart()}`, revoked: rotated.credential, swapped: `wvd.${deviceId}.${secret}.${mac}` };
  doc = (await call("GET", "/openapi.json", { token: null })).body;
});

/** `?wait=0` where the route takes `wait` (so no request waits); elsewhere it would be an unknown query parameter (400). */
function target(path: string, op: Operation) {
  return op.parameters?.some((p) => p.in === "query" && p.name === "wait") ? `${concrete(path)}?wait=0` : concrete(path);
}

// Budgets, not timings: alone, the forged-credential walk takes ~9 s; in the whole file on the shared 2-core machine at load 12, over 60 s.
describe("the auth matrix", { timeout: 180_000 }, () => {
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
          const res = await call(method.toUpperCase(), target(path, op), { token: tokens[role], json: method === "get" || method === "delete" ? undefined : {} });
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
      for (const [method, op] of Object.entries(methods)) {
        for (const [kind, token] of Object.entries(strangers)) {
          const res = await call(method.toUpperCase(), target(path, op), { token, json: method === "get" || method === "delete" ? undefined : { health: {}, runningJobs: [] } });
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
      for (const [method, op] of Object.entries(methods)) {
        const res = await call(method.toUpperCase(), target(path, op), { token: otherDevice, json: method === "get" || method === "delete" ? undefined : {}, headersExtra: { "x-lease-token": "aaaaaaaaaaaaaaaa" } });
        if (res.status < 300) rows.push(`${method.toUpperCase()} ${path} with another device's credential: ${res.status}`);
      }
    }
    expect(rows).toEqual([]);
  });
});

// Budgets, not timings: these walk every route several times on a loaded machine.
describe("the auth matrix with a dashboard session cookie", { timeout: 240_000 }, () => {
  const CSRF = { "x-wasmvisor-csrf": "1" };
  const cookieOf = (res: { headers: Headers }) => res.headers.get("set-cookie")!.split(";")[0]!;
  const classOf = (status: number) => (status === 401 || status === 403 ? String(status) : "allowed");
  const ops = () => Object.entries(doc.paths).flatMap(([p, methods]) => Object.entries(methods).map(([m, op]) => ({ p, m, op, roles: op["x-roles"]! })));
  const opOf = (m: string, p: string) => (doc.paths[p] as Record<string, Operation>)[m]!;
  const request = (m: string, p: string, headersExtra: Record<string, string>) =>
    call(m.toUpperCase(), target(p, opOf(m, p)), { token: null, json: m === "get" || m === "delete" ? undefined : {}, headersExtra });

  it("acts as its key's role (user), and changes nothing without the CSRF header or from another origin", async () => {
    const login = await call("POST", "/v1/session", { token: tokens.user });
    expect(login.status).toBe(201);
    const cookie = cookieOf(login);
    const rows: string[] = [];
    // Logout revokes the session: it goes last.
    const logout = (o: { p: string; m: string }) => (o.p === "/v1/session" && o.m === "delete" ? 1 : 0);
    for (const { p, m, roles } of ops().sort((a, b) => logout(a) - logout(b))) {
      // As the key itself would be (the matrix above checks keys against x-roles); a session never renews itself.
      const expected = p === "/v1/session" && m === "post" ? "403" : roles.includes("user") ? "allowed" : "403";
      if (m !== "get") {
        const bare = classOf((await request(m, p, { cookie })).status);
        if (bare === "allowed") rows.push(`${m} ${p} with the cookie, no CSRF header: ${bare}`);
        const foreign = classOf((await request(m, p, { cookie, ...CSRF, origin: "https://evil.example" })).status);
        if (foreign === "allowed") rows.push(`${m} ${p} with the cookie from another origin: ${foreign}`);
      }
      const withHeader = classOf((await request(m, p, { cookie, ...CSRF })).status);
      if (withHeader !== expected) rows.push(`${m} ${p} with the cookie and the header: expected ${expected}, got ${withHeader}`);
    }
    // and after the logout the cookie opens nothing
    expect((await call("GET", "/v1/session", { token: null, headersExtra: { cookie } })).status).toBe(401);
    expect(rows).toEqual([]);
  });

  it("answers 401 to a forged, tampered, unsigned or foreign-signed cookie", async () => {
    const good = cookieOf(await call("POST", "/v1/session", { token: ADMIN }));
    const [name, jwt] = good.split("=") as [string, string];
    const [h, payload, sig] = jwt.split(".");
    const claims = JSON.parse(atob(payload!.replace(/-/g, "+").replace(/_/g, "/")));
    const b64 = (o: unknown) => btoa(JSON.stringify(o)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    const everywhere = {
      "made up": `${name}=${randomPart()}`,
      "tampered (subject)": `${name}=${h}.${b64({ ...claims, sub: "kanotherkey00" })}.${sig}`,
    };
    const rows: string[] = [];
    for (const { p, m } of ops()) {
      for (const [kind, cookie] of Object.entries(everywhere)) {
        const res = await request(m, p, { cookie, ...CSRF });
        if (res.status !== 401) rows.push(`${m} ${p} with a ${kind} cookie: ${res.status}`);
      }
    }
    // The signature checks themselves, on a read and a write.
    const forged = { "unsigned (alg none)": `${name}=${b64({ alg: "none" })}.${payload}.`, "signed by another key": `${name}=${h}.${payload}.${randomPart()}` };
    for (const [kind, cookie] of Object.entries(forged)) {
      for (const [m, p] of [["get", "/v1/keys"], ["post", "/v1/keys"]] as const) {
        const res = await request(m, p, { cookie, ...CSRF });
        if (res.status !== 401) rows.push(`${m} ${p} with a ${kind} cookie: ${res.status}`);
      }
    }
    // The genuine cookie works (so the refusals above are about the tampering).
    expect((await request("get", "/v1/keys", { cookie: good })).status).toBe(200);
    expect(rows).toEqual([]);
  });
});

// Each property makes dozens of real requests: they get a time budget, and assert only statuses.
describe("request validation never answers 5xx", { timeout: 180_000 }, () => {
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
