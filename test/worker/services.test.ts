/**
 * Services in the control plane (workerd): create (now, stopped, later), the agent's
 * desired state and its reports, suspend/resume/kill/cancel/reset/remove, the output ring,
 * pending starts on the alarm with a pinned clock, the schedule hook once per occurrence,
 * namespaces, and the JSON-RPC mirror. The agent side is tested with real agents in
 * test/e2e/services.test.ts.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { call, DESCRIPTION, health, registerDevice, uploadModule } from "./helpers.js";

let dev: { deviceId: string; credential: string };
let counter: string;
const object = (id: string) => env.DEVICES.get(env.DEVICES.idFromName(id));
const svc = (name: string, extra: Record<string, unknown> = {}) => ({ name, module: counter, ...extra });
const path = (name = "") => `/v1/devices/${dev.deviceId}/services${name ? `/${name}` : ""}`;
const desired = async () => (await call("GET", "/v1/agent/services", { token: dev.credential })).body as { version: number; services: { spec: { name: string }; desired: string; run: number; resets: number; ended: boolean }[] };
const actual = (name: string, status: string, extra: Record<string, unknown> = {}) => ({
  name, run: 1, status, reason: `${status.toLowerCase()} for the test`, exitCode: null, restarts: 0, lastError: null, startedAt: 1_700_000_000_000, restartAt: null,
  pid: 4242, cpuMs: 120, cpuPercent: 3.5, rssBytes: 40_000_000, resets: 0, lines: [], ...extra,
});
const beat = (services: unknown[]) => call("POST", "/v1/agent/heartbeat", { token: dev.credential, json: { health: health(), services } });

beforeAll(async () => {
  counter = await uploadModule("countService");
  dev = await registerDevice("svc-dev");
});

describe("services", () => {
  it("create: validated (400/409/422), stored with the policy's defaults, and handed to the agent as desired", async () => {
    expect((await call("POST", path(), { json: { name: "Bad Name", module: counter } })).status).toBe(400);
    expect((await call("POST", path(), { json: svc("x", { restart: { initialDelayMs: 10, maxDelayMs: 5 } }) })).status).toBe(400);
    expect((await call("POST", path(), { json: svc("x", { entry: "nope" }) })).status).toBe(422);
    expect((await call("POST", path(), { json: { name: "x", module: "a".repeat(64) } })).status).toBe(422);
    const before = (await desired()).version;
    const made = await call("POST", path(), { json: svc("count", { args: ["--fast"], env: { MODE: "test" } }) });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ name: "count", status: "STARTING", desired: "running", run: 1, restarts: 0, reportedAt: null });
    expect(made.body.spec.restart).toEqual({ mode: "on-failure", maxRestarts: 5, windowMs: 60_000, initialDelayMs: 1_000, maxDelayMs: 60_000, resetAfterMs: 30_000, rearmAfterMs: 600_000 });
    expect((await call("POST", path(), { json: svc("count") })).status).toBe(409);
    const d = await desired();
    expect(d.version).toBeGreaterThan(before);
    expect(d.services.find((s) => s.spec.name === "count")).toMatchObject({ desired: "running", run: 1, resets: 0, ended: false });
  });

  it("the agent's heartbeat sets actual status, CPU, memory and output lines; GET /v1/devices/:id shows them", async () => {
    const lines = [{ at: 1, stream: "stdout", line: "count 0" }, { at: 2, stream: "stdout", line: "count 1" }];
    const hb = await beat([actual("count", "RUNNING", { lines }), actual("unknown-one", "RUNNING")]);
    expect(hb.status).toBe(200);
    const got = await call("GET", path("count"));
    expect(got.body).toMatchObject({ status: "RUNNING", pid: 4242, cpuPercent: 3.5, rssBytes: 40_000_000, startedAt: new Date(1_700_000_000_000).toISOString() });
    expect(got.body.reportedAt).not.toBeNull();
    const device = await call("GET", `/v1/devices/${dev.deviceId}`);
    expect(device.body.services).toContainEqual({ name: "count", status: "RUNNING", cpuPercent: 3.5, rssBytes: 40_000_000 });
    const logs = await call("GET", `${path("count")}/logs`);
    expect(logs.body.lines.map((l: { line: string }) => l.line)).toEqual(["count 0", "count 1"]);
    const after = await call("GET", `${path("count")}/logs?after=${logs.body.lines[0].seq}`);
    expect(after.body.lines.map((l: { line: string }) => l.line)).toEqual(["count 1"]);
    // Followed: the ring as server-sent events, then `end` when ?seconds= pass.
    const follow = await call("GET", `${path("count")}/logs?follow=1&seconds=1`);
    expect(follow.type).toBe("text/event-stream");
    expect(follow.body).toContain(`event: line\nid: ${logs.body.lines[0].seq}\ndata: {"seq":${logs.body.lines[0].seq}`);
    expect(follow.body).toMatch(/"line":"count 1"[\s\S]*event: end/);
    // A report of an earlier run changes nothing.
    await beat([actual("count", "CRASHED", { run: 0 })]);
    expect((await call("GET", path("count"))).body.status).toBe("RUNNING");
  });

  it("suspend, resume and kill change what is desired (idempotent); a killed service cannot be resumed or suspended", async () => {
    const v0 = (await desired()).version;
    expect((await call("POST", `${path("count")}/suspend`)).body.desired).toBe("suspended");
    expect((await call("POST", `${path("count")}/suspend`)).status).toBe(200);
    expect((await desired()).services.find((s) => s.spec.name === "count")?.desired).toBe("suspended");
    expect((await desired()).version).toBe(v0 + 1);
    expect((await call("POST", `${path("count")}/resume`)).body.desired).toBe("running");
    expect((await call("POST", `${path("count")}/kill`)).body.desired).toBe("killed");
    expect((await call("POST", `${path("count")}/resume`)).status).toBe(409);
    expect((await call("POST", `${path("count")}/suspend`)).status).toBe(409);
    expect((await call("POST", `${path("nothing")}/kill`)).status).toBe(404);
  });

  it("a created-stopped service is STOPPED and desired suspended until resumed", async () => {
    const made = await call("POST", path(), { json: svc("sleeper", { startStopped: true }) });
    expect(made.body).toMatchObject({ status: "STOPPED", desired: "suspended" });
    expect((await desired()).services.find((s) => s.spec.name === "sleeper")?.desired).toBe("suspended");
  });

  it("a delayed start is PENDING (not sent to the agent) until the alarm at its time; cancel makes it KILLED", async () => {
    const stub = object(dev.deviceId);
    const now = Date.now();
    await runInDurableObject(stub, (obj) => obj.clock.set(now));
    const later = await call("POST", path(), { json: svc("later", { startAfterMs: 60_000 }) });
    expect(later.body).toMatchObject({ status: "PENDING", startAt: new Date(now + 60_000).toISOString() });
    const at = await call("POST", path(), { json: svc("at-time", { startAt: new Date(now + 120_000).toISOString() }) });
    expect(at.body.status).toBe("PENDING");
    expect((await desired()).services.map((s) => s.spec.name)).not.toContain("later");
    // Reports about a pending service change nothing.
    await beat([actual("later", "RUNNING")]);
    expect((await call("GET", path("later"))).body.status).toBe("PENDING");

    expect((await call("POST", `${path("at-time")}/suspend`)).status).toBe(409);
    const canceled = await call("POST", `${path("at-time")}/cancel`);
    expect(canceled.body).toMatchObject({ status: "KILLED", desired: "killed", reason: "its pending start was canceled", startAt: null });
    expect((await call("POST", `${path("at-time")}/cancel`)).status).toBe(409);

    await runInDurableObject(stub, (obj) => obj.clock.set(now + 30_000));
    await runDurableObjectAlarm(stub);
    expect((await call("GET", path("later"))).body.status).toBe("PENDING");
    await runInDurableObject(stub, (obj) => obj.clock.set(now + 60_001));
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await call("GET", path("later"))).body).toMatchObject({ status: "STARTING", startAt: null });
    expect((await desired()).services.find((s) => s.spec.name === "later")).toMatchObject({ desired: "running", run: 1 });
    await runInDurableObject(stub, (obj) => obj.clock.release());
  });

  it("reset bumps the budget resets the agent compares; an ended run is marked so a wiped agent does not rerun it", async () => {
    await beat([actual("later", "CRASHED", { restarts: 5, lastError: "exited with code 3", exitCode: 3 })]);
    expect((await desired()).services.find((s) => s.spec.name === "later")).toMatchObject({ ended: true, resets: 0 });
    const reset = await call("POST", `${path("later")}/reset`);
    expect(reset.status).toBe(200);
    expect((await desired()).services.find((s) => s.spec.name === "later")).toMatchObject({ resets: 1 });
  });

  it("the schedule hook starts a new run once per occurrence id", async () => {
    const stub = object(dev.deviceId);
    const first = await runInDurableObject(stub, (obj) => obj.startServiceFromSchedule(null, "later", "occ-1", Date.now()));
    expect(first).toEqual({ ok: true, value: { started: true, run: 2 } });
    const again = await runInDurableObject(stub, (obj) => obj.startServiceFromSchedule(null, "later", "occ-1", Date.now()));
    expect(again).toEqual({ ok: true, value: { started: false, run: 2 } });
    expect((await desired()).services.find((s) => s.spec.name === "later")).toMatchObject({ run: 2, desired: "running", ended: false });
    expect(await runInDurableObject(stub, (obj) => obj.startServiceFromSchedule("other-ns", "later", "occ-2", Date.now()))).toMatchObject({ ok: false, problem: "not-found" });
    // The schedules part calls the hook inside its own firing's transaction: it nests.
    const nested = await runInDurableObject(stub, (obj, state) =>
      state.storage.transactionSync(() => (obj as unknown as { p: { services: { startFromSchedule(n: string, o: string, t: number): unknown; has(n: string): boolean } } }).p.services.startFromSchedule("later", "occ-3", Date.now())),
    );
    expect(nested).toEqual({ ok: true, value: { started: true, run: 3 } });
  });

  it("remove (any status) and remove many; the agent's desired state loses them", async () => {
    expect((await call("DELETE", path("count"))).body).toEqual({ removed: ["count"], absent: [] });
    expect((await call("DELETE", path("count"))).status).toBe(404);
    const many = await call("POST", `${path()}/remove`, { json: { names: ["sleeper", "later", "ghost"] } });
    expect(many.body).toEqual({ removed: ["sleeper", "later"], absent: ["ghost"] });
    const left = (await call("GET", path())).body.services.map((s: { name: string }) => s.name);
    expect(left).toEqual(["at-time"]);
    expect((await desired()).services.map((s) => s.spec.name)).toEqual(["at-time"]);
  });

  it("another namespace sees no services of this device (404), its own admin does", async () => {
    const admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: "svc-other" } })).body.key as string;
    expect((await call("GET", path(), { token: admin })).status).toBe(404);
    expect((await call("POST", path(), { token: admin, json: svc("intruder") })).status).toBe(404);
    expect((await call("POST", `${path("at-time")}/kill`, { token: admin })).status).toBe(404);
    const register = (await call("POST", "/v1/keys", { token: admin, json: { role: "register" } })).body.key as string;
    const own = (await call("POST", "/v1/devices/register", { token: register, json: { name: "other-dev", description: DESCRIPTION } })).body.deviceId as string;
    expect((await call("POST", `/v1/devices/${own}/services`, { token: admin, json: svc("mine") })).status).toBe(201);
  });

  it("JSON-RPC mirrors the routes", async () => {
    const rpc = (method: string, params: unknown) => call("POST", "/rpc", { json: { jsonrpc: "2.0", method, params, id: 1 } });
    const made = await rpc("service.create", { device: dev.deviceId, spec: svc("rpc-one", { startStopped: true }) });
    expect(made.body.result).toMatchObject({ name: "rpc-one", status: "STOPPED" });
    expect((await rpc("service.resume", { device: dev.deviceId, name: "rpc-one" })).body.result.desired).toBe("running");
    expect((await rpc("service.list", { device: dev.deviceId })).body.result.services.map((s: { name: string }) => s.name)).toContain("rpc-one");
    expect((await rpc("service.removeMany", { device: dev.deviceId, names: ["rpc-one"] })).body.result).toEqual({ removed: ["rpc-one"], absent: [] });
    expect((await rpc("service.status", { device: dev.deviceId, name: "rpc-one" })).body.error).toBeTruthy();
  });
});
