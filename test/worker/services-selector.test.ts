/**
 * Services placed by selector (POST /v1/services) through the real Worker, device listing
 * and device objects: the healthy matching device holding the fewest services gets it
 * (the job placement's code, measuring services), a device that already has the name, is
 * offline, drained or does not link what the module imports is passed over with its
 * reason, nothing matching is 422 with every candidate's reasons, and only the caller's
 * namespace is considered.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { call, DESCRIPTION, health, uploadModule } from "./helpers.js";

/** Each device's clock stands still at T0, so a device heard from stays online however slow the run. */
const T0 = Date.now() + 3_600_000;
const deviceObject = (id: string) => env.DEVICES.get(env.DEVICES.idFromName(id));

const NS = "svc-select";
type Dev = { deviceId: string; credential: string };
let admin: string;
let user: string;
let module: string;
const WASI = ["fd_write", "proc_exit", "poll_oneoff"];

async function device(name: string, labels: Record<string, string>, interfaces = WASI, online = true): Promise<Dev> {
  const register = (await call("POST", "/v1/keys", { token: admin, json: { role: "register" } })).body.key as string;
  const reg = await call("POST", "/v1/devices/register", { token: register, json: { name, description: { ...DESCRIPTION, supervisorInterfaces: interfaces, capabilities: { cameras: [], sensors: [], labels } } } });
  expect(reg.status).toBe(201);
  await runInDurableObject(deviceObject(reg.body.deviceId), (obj) => obj.clock.set(T0));
  if (online) expect((await call("POST", "/v1/agent/heartbeat", { token: reg.body.credential, json: { health: health() } })).status).toBe(200);
  return reg.body as Dev;
}

const place = (name: string, selector: unknown, token = user) => call("POST", "/v1/services", { token, json: { name, module, selector } });
const names = async (d: Dev) => (await call("GET", `/v1/devices/${d.deviceId}/services`, { token: user })).body.services.map((s: { name: string }) => s.name).sort();

beforeAll(async () => {
  admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: NS } })).body.key as string;
  user = (await call("POST", "/v1/keys", { token: admin, json: { role: "user" } })).body.key as string;
  module = await uploadModule("countService"); // imports fd_write and poll_oneoff
});

describe("services placed by selector", () => {
  it("go to the healthy matching device holding the fewest services; the others are passed over with their reasons", async () => {
    const busy = await device("busy", { site: "north" });
    const idle = await device("idle", { site: "north" });
    const noPoll = await device("no-poll", { site: "north" }, ["fd_write", "proc_exit"]);
    const asleep = await device("asleep", { site: "north" }, WASI, false);
    const south = await device("south", { site: "south" });
    for (const n of ["a-one", "a-two"]) expect((await call("POST", `/v1/devices/${busy.deviceId}/services`, { token: user, json: { name: n, module } })).status).toBe(201);

    const north = { labels: { site: "north" } };
    const first = await place("s1", north);
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect(first.body).toMatchObject({ device: idle.deviceId, name: "s1", status: "STARTING", desired: "running" });
    expect(first.headers.get("location")).toBe(`/v1/devices/${idle.deviceId}/services/s1`);
    // idle holds 1, busy 2: idle again.
    expect((await place("s2", north)).body.device).toBe(idle.deviceId);
    // A name the emptier device already has: it goes to the other.
    const dup = await place("s1", north);
    expect(dup.status).toBe(201);
    expect(dup.body.device).toBe(busy.deviceId);
    expect(await names(busy)).toEqual(["a-one", "a-two", "s1"]);
    expect(await names(idle)).toEqual(["s1", "s2"]);
    for (const d of [noPoll, asleep, south]) expect(await names(d)).toEqual([]);

    // A drained device is passed over too.
    expect((await call("POST", `/v1/devices/${idle.deviceId}/drain`, { token: user })).status).toBe(200);
    expect((await place("s3", north)).body.device).toBe(busy.deviceId);

    // Nothing fits: 422 with each candidate's reasons, and nothing is created anywhere.
    const none = await place("s4", { labels: { site: "north" }, arch: ["riscv64"] });
    expect(none.status).toBe(422);
    expect(none.type).toBe("application/problem+json");
    const reasons = Object.fromEntries(none.body.candidates.map((c: { device: string; reasons: string[] }) => [c.device, c.reasons]));
    expect(reasons[busy.deviceId]).toEqual(["architecture not declared, not riscv64"]);
    expect(reasons[noPoll.deviceId]).toEqual(["does not link poll_oneoff", "architecture not declared, not riscv64"]);
    expect(reasons[asleep.deviceId]).toEqual(["architecture not declared, not riscv64", "offline"]);
    expect(reasons[south.deviceId]).toEqual(["label site is south, not north", "architecture not declared, not riscv64"]);
    expect(none.body.detail).toMatch(/^no healthy device matches the selector: /);
    const onlyName = await place("a-one", { labels: { site: "north" } }); // busy has it; idle is drained
    expect(onlyName.status).toBe(422);
    const why = Object.fromEntries(onlyName.body.candidates.map((c: { device: string; reasons: string[] }) => [c.device, c.reasons]));
    expect(why[busy.deviceId]).toEqual(["already has a service named a-one"]);
    expect(why[idle.deviceId]).toEqual(["drained"]);
    for (const d of [busy, idle, noPoll, asleep, south]) expect(await names(d)).not.toContain("s4");
  });

  it("validates the spec as the per-device route does, and considers only the caller's namespace", async () => {
    await device("east", { site: "east" });
    expect((await call("POST", "/v1/services", { token: user, json: { name: "x", module, selector: { labels: { site: "east" } }, device: "d" } })).status).toBe(400);
    expect((await call("POST", "/v1/services", { token: user, json: { name: "x", module, selector: { labels: { site: "east" } }, entry: "nope" } })).status).toBe(422);
    expect((await call("POST", "/v1/services", { token: user, json: { name: "x", module: "a".repeat(64), selector: {} } })).status).toBe(422);
    const otherAdmin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: `${NS}-other` } })).body.key as string;
    const elsewhere = await place("x", { labels: { site: "east" } }, otherAdmin);
    expect(elsewhere.status).toBe(422);
    expect(elsewhere.body.detail).toBe("no healthy device matches the selector: no devices are registered in this namespace");
    expect((await place("x", { labels: { site: "east" } })).status).toBe(201);
    // JSON-RPC mirrors it (service.place), with the same 422 as an error carrying the problem.
    const rpc = (params: unknown) => call("POST", "/rpc", { token: user, json: { jsonrpc: "2.0", method: "service.place", params, id: 1 } });
    const placed = await rpc({ spec: { name: "y", module, selector: { labels: { site: "east" } } } });
    expect(placed.body.result).toMatchObject({ name: "y", status: "STARTING" });
    const refused = await rpc({ spec: { name: "z", module, selector: { labels: { site: "mars" } } } });
    expect(refused.body.error.code).toBe(-32602);
    expect(refused.body.error.data.candidates.map((c: { reasons: string[] }) => c.reasons)).toContainEqual(["label site is east, not mars"]);
  });
});
