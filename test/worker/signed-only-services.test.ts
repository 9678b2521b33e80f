/**
 * Security review findings 1 and 7: a namespace that accepts only signed jobs must not run
 * unsigned work through services or schedules. Service creation and service-target
 * schedules are refused (403, as POST /v1/jobs); schedules made before the setting was
 * turned on stop starting runs at fire time (the occurrence counts as missed, with a reason).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { runDurableObjectAlarm, runInDurableObject } from "./helpers.js";
import { call, DESCRIPTION, uploadModule } from "./helpers.js";
import { deviceStub } from "../../src/platform/stubs.js";
import { sqlOf } from "../../src/durable/sql-object.js";
import type { DeviceObject } from "../../src/durable/device-object.js";

const HOUR = 3_600_000;
const T0 = Date.parse("2030-01-10T00:00:00Z");
const NS = "signed-only-svc";
let deviceId: string;
let stub: DurableObjectStub<DeviceObject>;
let math: string;
let counter: string;

const setSigned = async (on: boolean) =>
  expect((await call("PUT", `/v1/namespaces/${NS}/settings`, { json: { requireSignedJobs: on } })).body).toMatchObject({ requireSignedJobs: on });

async function alarmAt(ms: number) {
  await runInDurableObject(stub, (obj: DeviceObject) => obj.clock.set(ms));
  return runDurableObjectAlarm(stub);
}

const jobCount = () => runInDurableObject(stub, (_o: DeviceObject, state) => sqlOf(state.storage.sql).one<{ n: number }>("SELECT COUNT(*) AS n FROM jobs")!.n);

beforeAll(async () => {
  const reg = (await call("POST", "/v1/keys", { json: { role: "register", namespace: NS } })).body.key;
  deviceId = (await call("POST", "/v1/devices/register", { token: reg, json: { description: DESCRIPTION } })).body.deviceId;
  stub = deviceStub(env, deviceId);
  await runInDurableObject(stub, (obj: DeviceObject) => obj.clock.set(T0));
  math = await uploadModule("math");
  counter = await uploadModule("countService");
});

describe("a namespace that requires signed jobs", () => {
  it("refuses creating a service (403 signature-required) and stores nothing", async () => {
    await setSigned(true);
    const res = await call("POST", `/v1/devices/${deviceId}/services`, { json: { name: "unsigned", module: counter } });
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ type: expect.stringMatching(/signature-required$/) });
    expect((await call("GET", `/v1/devices/${deviceId}/services`)).body.services).toEqual([]);
  });

  it("refuses a service-target schedule (403 signature-required)", async () => {
    await setSigned(false);
    expect((await call("POST", `/v1/devices/${deviceId}/services`, { json: { name: "made-before", module: counter, startStopped: true } })).status).toBe(201);
    await setSigned(true);
    const res = await call("POST", `/v1/devices/${deviceId}/schedules`, { json: { timing: { cron: "0 * * * *" }, target: { kind: "service", serviceId: "made-before" } } });
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ type: expect.stringMatching(/signature-required$/) });
  });

  it("schedules made before the setting was turned on start nothing at fire time: the occurrence is missed, with a reason", async () => {
    await setSigned(false);
    const job = await call("POST", `/v1/devices/${deviceId}/schedules`, { json: { timing: { cron: "0 * * * *" }, target: { kind: "job", submission: { module: math, function: "add32", args: [1, 2] } } } });
    const svc = await call("POST", `/v1/devices/${deviceId}/schedules`, { json: { timing: { cron: "0 * * * *" }, target: { kind: "service", serviceId: "made-before" } } });
    expect([job.status, svc.status]).toEqual([201, 201]);
    const runOf = async () => (await call("GET", `/v1/devices/${deviceId}/services/made-before`)).body.run as number;
    const run0 = await runOf();
    // While unsigned work is allowed, the occurrence runs.
    await alarmAt(T0 + HOUR);
    expect(await jobCount()).toBe(1);
    expect(await runOf()).toBe(run0 + 1);
    await setSigned(true);
    await alarmAt(T0 + 2 * HOUR);
    expect(await jobCount()).toBe(1);
    expect(await runOf()).toBe(run0 + 1);
    for (const id of [job.body.id, svc.body.id]) {
      const view = (await call("GET", `/v1/devices/${deviceId}/schedules/${id}`)).body;
      expect(view).toMatchObject({ missedCount: 1, status: "active", reason: expect.stringMatching(/signed/) });
      expect(view.lastFired.scheduledAt).toBe(new Date(T0 + HOUR).toISOString());
    }
  });
});
