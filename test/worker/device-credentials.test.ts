/**
 * Device credentials are verified at the Worker before anything is stored or
 * parsed: a made-up credential is refused without reaching a Durable Object,
 * an unregistered device id never gets storage, and a rotated (revoked)
 * credential stops working everywhere.
 */
import { describe, expect, it } from "vitest";
import { createExecutionContext, env, listDurableObjectIds, runInDurableObject } from "cloudflare:test";
import { ADMIN, call, DESCRIPTION, health, poll, registerDevice, uploadModule } from "./helpers.js";
import { createApp } from "../../src/worker/app.js";

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";
const randomId = () => "d" + Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => BASE32[b & 31]).join("");
const randomPart = () => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32)))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/** Credentials a stranger can make up: the old three-part shape, and the current shape with a made-up MAC. */
const forgeries = (deviceId: string) => [`wvd.${deviceId}.${randomPart()}`, `wvd.${deviceId}.${randomPart()}.${randomPart()}`];

const deviceObjectCount = async () => (await listDurableObjectIds(env.DEVICES)).length;
const stub = (deviceId: string) => env.DEVICES.get(env.DEVICES.idFromName(deviceId));
const tablesOf = (deviceId: string) =>
  runInDurableObject(stub(deviceId), (_obj, state) => state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").toArray().map((r) => r.name));

describe("device credentials", () => {
  it("refuses a made-up credential before any body is read, on every route a device may call", async () => {
    const digest = await uploadModule("math");
    for (const token of forgeries(randomId())) {
      for (const [method, path, json] of [
        ["GET", `/v1/modules/${digest}`, undefined],
        ["GET", "/v1/info", undefined],
        ["POST", "/rpc", { jsonrpc: "2.0", id: 1, method: "rpc.discover" }],
        ["POST", "/v1/agent/heartbeat", { not: "a heartbeat" }],
        ["GET", "/v1/agent/jobs?wait=0", undefined],
      ] as const) {
        const res = await call(method, path, { token, json });
        expect(res.status, `${method} ${path} with ${token.split(".").length}-part forgery`).toBe(401);
      }
    }
  });

  it("stores nothing for a stranger: forged polls and heartbeats address no Durable Object at all", async () => {
    const before = await deviceObjectCount();
    for (let i = 0; i < 5; i++) {
      for (const token of forgeries(randomId())) {
        expect((await poll(token)).status).toBe(401);
        expect((await call("POST", "/v1/agent/heartbeat", { token, json: { health: health(), runningJobs: [] } })).status).toBe(401);
      }
    }
    expect(await deviceObjectCount()).toBe(before);
  });

  it("writes nothing into a device object until the device registers: reads of an unknown id answer 404 and leave no tables", async () => {
    const id = randomId();
    for (const path of [`/v1/devices/${id}`, `/v1/jobs/${id}-aaaaaaaaaaaaaaaa`, `/v1/jobs/${id}-aaaaaaaaaaaaaaaa/logs`, `/v1/devices/${id}/logs`]) {
      expect((await call("GET", path)).status, path).toBe(404);
    }
    expect((await call("POST", `/v1/jobs/${id}-aaaaaaaaaaaaaaaa/cancel`)).status).toBe(404);
    expect(await stub(id).exists(null)).toBe(false);
    expect(await tablesOf(id)).toEqual([]);
  });

  it("rotating a credential revokes the old one at once, everywhere; the new one works", async () => {
    const dev = await registerDevice("rotated");
    expect((await poll(dev.credential)).status).toBe(200);
    const rotated = await call("POST", `/v1/devices/${dev.deviceId}/credential`);
    expect(rotated.status).toBe(201);
    expect(rotated.body.deviceId).toBe(dev.deviceId);
    const fresh = rotated.body.credential as string;
    expect(fresh).not.toBe(dev.credential);
    expect((await poll(dev.credential)).status).toBe(401);
    expect((await call("GET", "/v1/info", { token: dev.credential })).status).toBe(401);
    expect((await call("POST", "/v1/agent/heartbeat", { token: dev.credential, json: { health: health(), runningJobs: [] } })).status).toBe(401);
    expect((await poll(fresh)).status).toBe(200);
    expect((await call("POST", "/v1/agent/heartbeat", { token: fresh, json: { health: health(), runningJobs: [] } })).status).toBe(200);
  });

  it("one device's credential does not act for another device", async () => {
    const a = await registerDevice("cred-a");
    const b = await registerDevice("cred-b");
    const [prefix, , ...rest] = a.credential.split(".");
    const swapped = [prefix, b.deviceId, ...rest].join(".");
    expect((await poll(swapped)).status).toBe(401);
    expect((await call("GET", "/v1/info", { token: swapped })).status).toBe(401);
  });

  it("without DEVICE_CREDENTIAL_KEY (or with one under 32 characters) issues no device credential and accepts none, answering 503 so agents keep theirs", async () => {
    const dev = await registerDevice("no-key");
    const app = createApp();
    for (const key of [undefined, "too-short-0123456789"]) {
      const bare = { ...env, DEVICE_CREDENTIAL_KEY: key };
      const send = (path: string, token: string, init: RequestInit = {}) =>
        app.fetch(new Request(`https://wasmvisor.test${path}`, { ...init, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } }), bare, createExecutionContext());
      const register = await send("/v1/devices/register", ADMIN, { method: "POST", body: JSON.stringify({ name: "x", description: DESCRIPTION }) });
      expect(register.status, String(key)).toBe(503);
      expect((await register.json<{ type: string }>()).type).toBe("urn:wasmvisor:problem:not-configured");
      expect((await send("/v1/agent/jobs?wait=0", dev.credential)).status, String(key)).toBe(503);
      expect((await send(`/v1/devices/${dev.deviceId}/credential`, ADMIN, { method: "POST" })).status, String(key)).toBe(503);
    }
    expect((await poll(dev.credential)).status).toBe(200);
  });
});
