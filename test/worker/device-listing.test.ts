/**
 * The device listing (GET /v1/devices) is sharded by namespace and a hash of the device id,
 * and fed by device objects publishing only what changed: heartbeats that change nothing
 * listed write nothing, a status change writes once, and pages merge the shards in order.
 */
import { describe, expect, it } from "vitest";
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { call, DESCRIPTION, health, registerDevice } from "./helpers.js";
import { listingShard, listingShardName } from "../../src/core/device-listing.js";

const SHARDS = Number(env.DEVICE_LIST_SHARDS ?? "4");
const deviceObject = (deviceId: string) => env.DEVICES.get(env.DEVICES.idFromName(deviceId));

/** The device's row in the listing, read in the shard object that holds it. */
async function listingRow(deviceId: string, namespace = "default") {
  const shard = env.DEVICE_LIST.get(env.DEVICE_LIST.idFromName(listingShardName(namespace, listingShard(deviceId, SHARDS))));
  return runInDurableObject(shard, (_obj, state) => state.storage.sql.exec("SELECT * FROM devices WHERE id = ?", deviceId).toArray()[0]);
}

const heartbeat = (credential: string, cpuPercent: number) =>
  call("POST", "/v1/agent/heartbeat", { token: credential, json: { health: { ...health(), cpuPercent } } });

describe("publishing to the device listing", () => {
  it("heartbeats that change nothing listed write nothing", async () => {
    const { deviceId, credential } = await registerDevice("quiet");
    expect((await heartbeat(credential, 1)).status).toBe(200); // offline -> online: published
    const before = await listingRow(deviceId);
    expect(before).toMatchObject({ status: "online", revision: 2 }); // registration, then online
    for (let i = 2; i <= 6; i++) expect((await heartbeat(credential, i)).status).toBe(200);
    expect(await listingRow(deviceId)).toEqual(before);
    // The device's own view is fresh all the same.
    expect((await call("GET", `/v1/devices/${deviceId}`)).body.health.cpuPercent).toBe(6);
  });

  it("publishes a status change once, and health alone only after the refresh interval", async () => {
    const { deviceId, credential } = await registerDevice("changing");
    const device = deviceObject(deviceId);
    await heartbeat(credential, 1);
    const now = Date.now();
    await runInDurableObject(device, (obj) => obj.clock.set(now + 1_000)); // past HEARTBEAT_TIMEOUT_MS (600 in tests)
    await runDurableObjectAlarm(device); // the alarm turns it offline
    expect(await listingRow(deviceId)).toMatchObject({ status: "offline", revision: 3 });
    await heartbeat(credential, 2); // back online
    await heartbeat(credential, 3);
    expect(await listingRow(deviceId)).toMatchObject({ status: "online", revision: 4 });
    expect(JSON.parse((await listingRow(deviceId))!.health as string).cpuPercent).toBe(2);

    await runInDurableObject(device, (obj) => obj.clock.set(now + 11 * 60_000)); // past the 10-minute health refresh
    await heartbeat(credential, 9);
    const refreshed = await listingRow(deviceId);
    expect(refreshed).toMatchObject({ status: "online", revision: 5 });
    expect(JSON.parse(refreshed!.health as string).cpuPercent).toBe(9);
  });
});

describe("the sharded device listing", () => {
  it("pages through a namespace's devices across shards in registration order, each once", async () => {
    const admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: "sharded" } })).body.key as string;
    const register = (await call("POST", "/v1/keys", { token: admin, json: { role: "register" } })).body.key as string;
    const ids: string[] = [];
    for (let i = 0; i < 9; i++) {
      const reg = await call("POST", "/v1/devices/register", { token: register, json: { name: `s-${i}`, description: DESCRIPTION } });
      expect(reg.status).toBe(201);
      ids.push(reg.body.deviceId);
    }
    expect(new Set(ids.map((id) => listingShard(id, SHARDS))).size).toBeGreaterThan(1);

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: { devices: { id: string; namespace: string; registeredAt: string }[]; nextCursor: string | null } } =
        await call("GET", `/v1/devices?limit=4${cursor ? `&cursor=${cursor}` : ""}`, { token: admin });
      expect(res.status).toBe(200);
      expect(res.body.devices.length).toBeLessThanOrEqual(4);
      for (const d of res.body.devices) expect(d.namespace).toBe("sharded");
      seen.push(...res.body.devices.map((d) => `${d.registeredAt} ${d.id}`));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor);
    expect(seen).toEqual([...seen].sort()); // (registeredAt, id) order, across shards
    expect(seen.map((s) => s.split(" ")[1])).toEqual(expect.arrayContaining(ids));
    expect(seen).toHaveLength(ids.length);
    expect(pages).toBe(3);

    // Filtered by status across shards: one device online.
    const { credential } = (await call("POST", "/v1/devices/register", { token: register, json: { name: "live", description: DESCRIPTION } })).body;
    await heartbeat(credential, 1);
    const online = (await call("GET", "/v1/devices?status=online&limit=500", { token: admin })).body.devices.map((d: { name: string }) => d.name);
    expect(online).toEqual(["live"]);
  });

  it("pages a global key's listing namespace by namespace, and refuses a cursor it did not hand out", async () => {
    for (const ns of ["glob-a", "glob-b"]) {
      const register = (await call("POST", "/v1/keys", { json: { role: "register", namespace: ns } })).body.key as string;
      for (let i = 0; i < 3; i++) await call("POST", "/v1/devices/register", { token: register, json: { name: `${ns}-${i}`, description: DESCRIPTION } });
    }
    const seen: { id: string; namespace: string }[] = [];
    let cursor: string | null = null;
    do {
      const res: { body: { devices: { id: string; namespace: string }[]; nextCursor: string | null } } = await call("GET", `/v1/devices?limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      seen.push(...res.body.devices);
      cursor = res.body.nextCursor;
    } while (cursor);
    expect(new Set(seen.map((d) => d.id)).size).toBe(seen.length);
    const namespaces = seen.map((d) => d.namespace);
    expect(namespaces).toEqual([...namespaces].sort());
    expect(namespaces.filter((n) => n === "glob-a")).toHaveLength(3);
    expect(namespaces.filter((n) => n === "glob-b")).toHaveLength(3);

    expect((await call("GET", "/v1/devices?cursor=bm9wZQ")).status).toBe(400);
    const otherTenant = (await call("POST", "/v1/keys", { json: { role: "user", namespace: "glob-b" } })).body.key as string;
    const intoA = btoa(JSON.stringify(["glob-a", 0, "d"])).replace(/=+$/, "");
    expect((await call("GET", `/v1/devices?cursor=${intoA}`, { token: otherTenant })).status).toBe(400);
  });
  it("visits a bounded number of namespaces per page, and the cursor goes on from the next one", async () => {
    const mine: string[] = [];
    for (let i = 0; i < 18; i++) {
      const register = (await call("POST", "/v1/keys", { json: { role: "register", namespace: `many-${String(i).padStart(2, "0")}` } })).body.key as string;
      mine.push((await call("POST", "/v1/devices/register", { token: register, json: { name: `many-${i}`, description: DESCRIPTION } })).body.deviceId);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { body: { devices: { id: string }[]; nextCursor: string | null } } = await call("GET", `/v1/devices?limit=500${cursor ? `&cursor=${cursor}` : ""}`);
      seen.push(...res.body.devices.map((d) => d.id));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBeGreaterThan(1); // short pages: 16 namespaces each at most
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining(mine));
  });
});
