/**
 * Security review findings 3 and 4: schedules cannot flood a device (a minimum interval
 * between occurrences; a service keeps only its last occurrence ids), and a schedule whose
 * firing fails every time backs off and is then paused with a reason instead of retrying
 * every few seconds forever. Time is the device object's injected clock.
 */
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { runDurableObjectAlarm, runInDurableObject } from "./helpers.js";
import { call, registerDevice, uploadModule } from "./helpers.js";
import { deviceStub } from "../../src/platform/stubs.js";
import { sqlOf } from "../../src/durable/sql-object.js";
import type { DeviceObject } from "../../src/durable/device-object.js";
import { SCHEDULE_LIMITS } from "../../src/protocol/schedule.js";
import { KEPT_OCCURRENCES } from "../../src/durable/device-services.js";
import { MAX_FIRING_FAILURES, RETRY_AFTER_ERROR_MS } from "../../src/durable/schedules.js";

const HOUR = 3_600_000;
const T0 = Date.parse("2030-01-10T00:00:00Z");

async function device(name: string) {
  const dev = await registerDevice(name);
  const stub = deviceStub(env, dev.deviceId);
  await runInDurableObject(stub, (obj: DeviceObject) => obj.clock.set(T0));
  return { ...dev, stub };
}

describe("minimum interval between occurrences", () => {
  it("refuses a job cron closer than the job minimum and a service cron closer than the service minimum (400 naming timing.cron)", async () => {
    const d = await device("limits-interval");
    const math = await uploadModule("math");
    const counter = await uploadModule("countService");
    expect((await call("POST", `/v1/devices/${d.deviceId}/services`, { json: { name: "svc", module: counter, startStopped: true } })).status).toBe(201);
    const job = { kind: "job", submission: { module: math, function: "add32", args: [1, 2] } };
    const svc = { kind: "service", serviceId: "svc" };
    const post = (cron: string, target: unknown) => call("POST", `/v1/devices/${d.deviceId}/schedules`, { json: { timing: { cron }, target } });
    for (const [cron, target] of [["* * * * * *", job], ["*/2 * * * * *", job], ["*/30 * * * * *", svc]] as const) {
      const res = await post(cron, target);
      expect({ cron, status: res.status }).toEqual({ cron, status: 400 });
      expect(res.body.errors).toEqual([{ path: "timing.cron", message: expect.stringContaining("apart") }]);
    }
    expect(SCHEDULE_LIMITS.minIntervalMs).toEqual({ job: 10_000, service: 60_000 });
    expect((await post("*/10 * * * * *", job)).status).toBe(201);
    expect((await post("* * * * *", svc)).status).toBe(201);
  });

  it("a service keeps only its last occurrence ids, enough that a retried fire of a recent one starts nothing", async () => {
    const d = await device("limits-occurrences");
    const counter = await uploadModule("countService");
    expect((await call("POST", `/v1/devices/${d.deviceId}/services`, { json: { name: "svc", module: counter, startStopped: true } })).status).toBe(201);
    const s = await call("POST", `/v1/devices/${d.deviceId}/schedules`, { json: { timing: { cron: "0 * * * *" }, target: { kind: "service", serviceId: "svc" } } });
    expect(s.status).toBe(201);
    const n = KEPT_OCCURRENCES + 5;
    for (let i = 1; i <= n; i++) {
      await runInDurableObject(d.stub, (obj: DeviceObject) => obj.clock.set(T0 + i * HOUR));
      await runDurableObjectAlarm(d.stub);
    }
    const rows = await runInDurableObject(d.stub, (_o: DeviceObject, state) => sqlOf(state.storage.sql).all<{ occurrence: string }>("SELECT occurrence FROM service_occurrences ORDER BY at"));
    expect(rows).toHaveLength(KEPT_OCCURRENCES);
    expect(rows.at(-1)!.occurrence).toBe(`${s.body.id}@${new Date(T0 + n * HOUR).toISOString()}`);
    expect((await call("GET", `/v1/devices/${d.deviceId}/services/svc`)).body.run).toBeGreaterThanOrEqual(n);
    // A retried fire of the latest occurrence (its id is kept) starts nothing new.
    const again = await runInDurableObject(d.stub, (obj: DeviceObject) =>
      (obj as unknown as { p: { services: { startFromSchedule(n: string, o: string, t: number): { ok: boolean; value: { started: boolean } } } } }).p.services.startFromSchedule("svc", rows.at(-1)!.occurrence, T0 + n * HOUR),
    );
    expect(again).toMatchObject({ ok: true, value: { started: false } });
  });
});

describe("a firing that fails every time", () => {
  it("backs off between tries, then pauses the schedule with a reason", async () => {
    const d = await device("limits-failing");
    const tries: number[] = [];
    await runInDurableObject(d.stub, (obj: DeviceObject) => {
      (obj as unknown as { p: { schedules: { setServiceStarter(s: unknown): void } } }).p.schedules.setServiceStarter({
        startFromSchedule: (_id: string, _occ: string, now: number) => {
          tries.push(now);
          throw new Error("deterministic failure");
        },
      });
    });
    const s = await call("POST", `/v1/devices/${d.deviceId}/schedules`, { json: { timing: { cron: "0 * * * *" }, missed: "catch-up-once", target: { kind: "service", serviceId: "anything" } } });
    expect(s.status).toBe(201);
    let t = T0 + HOUR;
    const gaps: number[] = [];
    for (let i = 0; i < MAX_FIRING_FAILURES + 3; i++) {
      await runInDurableObject(d.stub, (obj: DeviceObject) => obj.clock.set(t));
      await runDurableObjectAlarm(d.stub);
      const view = (await call("GET", `/v1/devices/${d.deviceId}/schedules/${s.body.id}`)).body;
      if (view.status === "paused") break;
      const next = Date.parse(view.nextAt);
      gaps.push(next - t);
      t = next;
    }
    // Each failure waits longer than the one before, starting at the retry delay.
    expect(tries).toHaveLength(MAX_FIRING_FAILURES);
    expect(gaps[0]).toBe(RETRY_AFTER_ERROR_MS);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]!).toBeGreaterThan(gaps[i - 1]!);
    const view = (await call("GET", `/v1/devices/${d.deviceId}/schedules/${s.body.id}`)).body;
    expect(view).toMatchObject({ status: "paused", nextAt: null, reason: expect.stringMatching(/paused after \d+ failed firings.*deterministic failure/) });
    // Paused: further alarms do not try again.
    await runInDurableObject(d.stub, (obj: DeviceObject) => obj.clock.set(t + 10 * HOUR));
    await runDurableObjectAlarm(d.stub);
    expect(tries).toHaveLength(MAX_FIRING_FAILURES);
    // Resuming clears the count: it is tried again.
    expect((await call("POST", `/v1/devices/${d.deviceId}/schedules/${s.body.id}/resume`)).body).toMatchObject({ status: "active", reason: null });
  });
});
