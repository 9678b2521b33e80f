import { describe, expect, it } from "vitest";
import { call, DESCRIPTION, health, registerDevice, submit, uploadModule, wasm, ADMIN } from "./helpers.js";

const PROBLEM = "application/problem+json";

describe("liveness and authentication", () => {
  it("answers /healthz without credentials, and nothing else", async () => {
    expect((await call("GET", "/healthz", { token: null })).status).toBe(200);
    for (const path of ["/v1/devices", "/v1/keys", "/v1/jobs/dabcdefghijklmnop-abcdefghijklmnop"]) {
      const res = await call("GET", path, { token: null });
      expect(res.status).toBe(401);
      expect(res.type).toBe(PROBLEM);
      expect(res.body.type).toBe("urn:wasmvisor:problem:unauthenticated");
    }
  });

  it("refuses unknown and malformed credentials", async () => {
    expect((await call("GET", "/v1/devices", { token: "nope" })).status).toBe(401);
    expect((await call("GET", "/v1/devices", { token: "wvk.kaaaaaaaaaaaa.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" })).status).toBe(401);
  });

  it("gives each role only its own routes", async () => {
    const user = (await call("POST", "/v1/keys", { json: { role: "user" } })).body.key;
    const register = (await call("POST", "/v1/keys", { json: { role: "register" } })).body.key;
    expect((await call("GET", "/v1/devices", { token: user })).status).toBe(200);
    expect((await call("POST", "/v1/keys", { token: user, json: { role: "admin" } })).status).toBe(403);
    expect((await call("GET", "/v1/devices", { token: register })).status).toBe(403);
    const { credential } = await registerDevice();
    const asDevice = await call("GET", "/v1/devices", { token: credential });
    expect(asDevice.status).toBe(403);
    expect(asDevice.body.type).toBe("urn:wasmvisor:problem:forbidden");
  });

  it("stops honouring a revoked key", async () => {
    const created = (await call("POST", "/v1/keys", { json: { role: "user", label: "ci" } })).body;
    expect(created.key).toMatch(/^wvk\./);
    const listed = (await call("GET", "/v1/keys")).body.keys;
    expect(JSON.stringify(listed)).not.toContain(created.key.split(".")[2]); // secrets are never listed
    // Used once: its positive check is now cached in this isolate.
    expect((await call("GET", "/v1/devices", { token: created.key })).status).toBe(200);
    expect((await call("DELETE", `/v1/keys/${created.id}`)).body.revokedAt).not.toBeNull();
    // Revoked through this isolate: refused at once, cache or not (other isolates: within KEY_CACHE_MS).
    expect((await call("GET", "/v1/devices", { token: created.key })).status).toBe(401);
  });

  it("keeps device A's credential away from device B", async () => {
    const a = await registerDevice("a");
    const b = await registerDevice("b");
    const forged = `wvd.${b.deviceId}.${a.credential.split(".")[2]}`;
    expect((await call("GET", "/v1/agent/jobs?wait=0", { token: forged })).status).toBe(401);
    expect((await call("POST", "/v1/agent/heartbeat", { token: forged, json: { health: health() } })).status).toBe(401);
  });
});

describe("validation answers problem+json and changes nothing", () => {
  it("rejects malformed JSON, missing fields, unknown fields and bad ids", async () => {
    const bad = await call("POST", "/v1/jobs", { body: "{oops", type: "application/json" });
    expect(bad.status).toBe(400);
    expect(bad.type).toBe(PROBLEM);
    const missing = await call("POST", "/v1/jobs", { json: { device: "nope" } });
    expect(missing.status).toBe(400);
    expect(missing.body.errors.map((e: { path: string }) => e.path)).toEqual(expect.arrayContaining(["device", "module", "function"]));
    const { deviceId } = await registerDevice();
    const digest = await uploadModule("math");
    const extra = await submit(deviceId, digest, "add32", [1, 2], { surprise: true });
    expect(extra.status).toBe(400);
    expect((await call("GET", `/v1/devices/${deviceId}`)).body.queue).toEqual({ queued: 0, running: 0 });
  });

  it("limits body sizes", async () => {
    const big = await call("POST", "/v1/jobs", { body: JSON.stringify({ pad: "x".repeat(300 * 1024) }), type: "application/json" });
    expect(big.status).toBe(413);
    expect(big.body.type).toBe("urn:wasmvisor:problem:too-large");
  });

  it("checks a job against the module's real signature before queueing it", async () => {
    const { deviceId } = await registerDevice();
    const digest = await uploadModule("math");
    const unknownModule = await submit(deviceId, "0".repeat(64), "add32", [1, 2]);
    expect(unknownModule.status).toBe(422);
    const noFn = await submit(deviceId, digest, "nope");
    expect(noFn.status).toBe(400);
    expect(noFn.body.detail).toContain("add64");
    expect((await submit(deviceId, digest, "add32", [1])).body.detail).toContain("expected 2 argument");
    expect((await submit(deviceId, digest, "add64", [2 ** 53 + 2, 1])).status).toBe(400);
    expect((await submit(deviceId, digest, "add64", ["9007199254740993", 1])).status).toBe(202);
    expect((await call("GET", `/v1/devices/${deviceId}`)).body.queue.queued).toBe(1);
  });

  it("refuses a job for a device that does not exist", async () => {
    const digest = await uploadModule("math");
    const res = await submit("daaaaaaaaaaaaaaaa", digest, "add32", [1, 2]);
    expect(res.status).toBe(404);
  });

  it("refuses a deadline already in the past", async () => {
    const { deviceId } = await registerDevice();
    const digest = await uploadModule("math");
    expect((await submit(deviceId, digest, "add32", [1, 2], { deadline: "2001-01-01T00:00:00Z" })).status).toBe(422);
  });
});

describe("modules", () => {
  it("stores a module by sha256 and describes its exports and imports", async () => {
    const res = await call("POST", "/v1/modules", { body: wasm("hello"), type: "application/wasm" });
    expect([200, 201]).toContain(res.status);
    expect(res.body.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(res.body.exports).toContainEqual({ name: "greet", kind: "function", signature: { params: [], results: ["i32"] } });
    expect(res.body.imports[0]).toMatchObject({ module: "wasi_snapshot_preview1", name: "fd_write" });
    const again = await call("POST", "/v1/modules", { body: wasm("hello"), type: "application/wasm" });
    expect(again.status).toBe(200);
    const bin = await call("GET", `/v1/modules/${res.body.digest}/binary`);
    expect(bin.status).toBe(200);
  });

  it("refuses bytes that are not a valid module, and the wrong media type", async () => {
    const garbage = await call("POST", "/v1/modules", { body: new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 99, 1]), type: "application/wasm" });
    expect(garbage.status).toBe(400);
    expect(garbage.body.type).toBe("urn:wasmvisor:problem:bad-wasm");
    expect((await call("POST", "/v1/modules", { body: wasm("hello"), type: "text/plain" })).status).toBe(415);
    expect((await call("POST", "/v1/modules", { body: new Uint8Array(), type: "application/wasm" })).status).toBe(400);
  });

  it("lets a device download modules but not upload them", async () => {
    const { credential } = await registerDevice();
    const digest = await uploadModule("math");
    expect((await call("GET", `/v1/modules/${digest}/binary`, { token: credential })).status).toBe(200);
    expect((await call("POST", "/v1/modules", { token: credential, body: wasm("math"), type: "application/wasm" })).status).toBe(403);
    const stolen = `wvd.${credential.split(".")[1]}.${"A".repeat(43)}`;
    expect((await call("GET", `/v1/modules/${digest}/binary`, { token: stolen })).status).toBe(401);
  });
});

describe("devices", () => {
  it("registers with a register key, stores only the credential's hash, lists and shows the device", async () => {
    const { deviceId, credential } = await registerDevice("kitchen-pi");
    expect(credential).toMatch(new RegExp(`^wvd\\.${deviceId}\\.`));
    const one = await call("GET", `/v1/devices/${deviceId}`);
    expect(one.body).toMatchObject({ id: deviceId, name: "kitchen-pi", status: "offline", description: { platform: DESCRIPTION.platform } });
    expect(JSON.stringify(one.body)).not.toContain(credential.split(".")[2]);
    const hb = await call("POST", "/v1/agent/heartbeat", { token: credential, json: { health: health() } });
    expect(hb.status).toBe(200);
    const listed = (await call("GET", "/v1/devices?status=online&limit=500")).body.devices;
    expect(listed.find((d: { id: string }) => d.id === deviceId)).toMatchObject({ status: "online", health: { cpuPercent: 12.5 } });
  });

  it("paginates the device listing with a cursor", async () => {
    for (let i = 0; i < 3; i++) await registerDevice(`page-${i}`);
    const seen = new Set<string>();
    let cursor: string | null = null;
    do {
      const res: { body: { devices: { id: string }[]; nextCursor: string | null } } = await call("GET", `/v1/devices?limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(res.body.devices.length).toBeLessThanOrEqual(2);
      for (const d of res.body.devices) {
        expect(seen.has(d.id)).toBe(false);
        seen.add(d.id);
      }
      cursor = res.body.nextCursor;
    } while (cursor);
    expect(seen.size).toBeGreaterThanOrEqual(3);
  });

  it("refuses a registration without a valid description", async () => {
    const res = await call("POST", "/v1/devices/register", { json: { description: { platform: {} } } });
    expect(res.status).toBe(400);
    expect(ADMIN).toBeTruthy();
  });
});

describe("methods and media types", () => {
  it("answers 405 with Allow for a path that exists under other methods, 404 for one that does not", async () => {
    const wrong = await call("PUT", "/v1/jobs/dabcdefghijklmnop-abcdefghijklmnop");
    expect(wrong.status).toBe(405);
    expect(wrong.type).toBe(PROBLEM);
    expect(wrong.headers.get("allow")).toBe("DELETE, GET, HEAD");
    expect(wrong.body.type).toBe("urn:wasmvisor:problem:method-not-allowed");
    expect((await call("DELETE", "/v1/modules")).headers.get("allow")).toBe("POST");
    expect((await call("GET", "/v1/no-such-thing")).status).toBe(404);
  });

  it("names the accepted media types when the body has another", async () => {
    const res = await call("POST", "/v1/jobs", { body: "device=x", type: "application/x-www-form-urlencoded" });
    expect(res.status).toBe(415);
    expect(res.type).toBe(PROBLEM);
    expect(res.body.detail).toContain("application/json");
    const mod = await call("POST", "/v1/modules", { body: wasm("hello"), type: "text/plain" });
    expect(mod.body.detail).toContain("application/wasm or application/octet-stream");
    expect(mod.body.detail).toContain("text/plain");
  });

  it("judges the caller before the media type", async () => {
    expect((await call("POST", "/v1/jobs", { token: null, body: "x", type: "text/plain" })).status).toBe(401);
  });
});

describe("the API reference", () => {
  it("serves /docs loading every script and style from this Worker, none from a CDN", async () => {
    const page = await call("GET", "/docs", { token: null });
    expect(page.status).toBe(200);
    const refs = [...String(page.body).matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs).toEqual(["/vendor/swagger-ui/swagger-ui.css", "/vendor/swagger-ui/swagger-ui-bundle.js", "/api-reference.js"]);
    // That the runtime serves these files is tested end to end (test/e2e/assets.test.ts):
    // this pool runs the Worker without its asset store.
  });
});
