/**
 * Schedules (issue 11, item 6): cron and one-shot starts of jobs, fired exactly once per
 * occurrence by the device object's alarm, driven by the object's injected clock (pinned
 * years ahead of real time, so the alarms it sets never fire on their own: only when the
 * test runs them), across a restart of the object, with the missed-occurrence policies.
 */
import { describe, expect, it } from "vitest";
import { abortAllDurableObjects, env } from "cloudflare:test";
import { runDurableObjectAlarm, runInDurableObject } from "./helpers.js";
import { call, registerDevice, uploadModule } from "./helpers.js";
import { deviceStub } from "../../src/platform/stubs.js";
import { sqlOf } from "../../src/durable/sql-object.js";
import type { DeviceObject } from "../../src/durable/device-object.js";
import { RETRY_AFTER_ERROR_MS } from "../../src/durable/schedules.js";

const MIN = 60_000;
const HOUR = 60 * MIN;
/** 2030-01-10T00:00:00Z, a Thursday: years ahead of the real clock. */
const T0 = Date.parse("2030-01-10T00:00:00Z");
const at = (ms: number) => new Date(ms).toISOString();

async function device(name: string) {
  const dev = await registerDevice(name);
  const stub = deviceStub(env, dev.deviceId);
  await setClock(stub, T0);
  return { ...dev, stub, digest: await uploadModule("math") };
}

async function setClock(stub: DurableObjectStub<DeviceObject>, ms: number) {
  await runInDurableObject(stub, (obj: DeviceObject) => obj.clock.set(ms));
}

/** Moves the object's clock to `ms` and runs its alarm. */
async function alarmAt(stub: DurableObjectStub<DeviceObject>, ms: number) {
  await setClock(stub, ms);
  return runDurableObjectAlarm(stub);
}

/** The jobs stored on the device, oldest first (read from the object's own database). */
async function jobsOn(stub: DurableObjectStub<DeviceObject>) {
  return runInDurableObject(stub, (_obj: DeviceObject, state) =>
    sqlOf(state.storage.sql).all<{ id: string; state: string; args: string; deadline: number | null }>("SELECT id, state, args, deadline FROM jobs ORDER BY seq"),
  );
}

function jobTarget(digest: string, args: number[] = [1, 2]) {
  return { kind: "job", submission: { module: digest, function: "add32", args } };
}

async function schedule(deviceId: string, body: Record<string, unknown>) {
  const res = await call("POST", `/v1/devices/${deviceId}/schedules`, { json: body });
  if (res.status !== 201) throw new Error(`${res.status} ${JSON.stringify(res.body)}`);
  return res.body as { id: string; nextAt: string | null; status: string };
}

const show = async (deviceId: string, id: string) => (await call("GET", `/v1/devices/${deviceId}/schedules/${id}`)).body;

describe("schedules fire exactly once per occurrence", () => {
  it("one job per occurrence; a repeated alarm fires nothing new; a restart of the object between occurrences keeps it so", async () => {
    const d = await device("sched-once");
    const s = await schedule(d.deviceId, { name: "hourly sum", timing: { cron: "0 * * * *" }, target: jobTarget(d.digest, [20, 22]) });
    expect(s.nextAt).toBe(at(T0 + HOUR));
    expect(await jobsOn(d.stub)).toEqual([]);

    // Not yet due: the alarm (set for the occurrence) run early starts nothing.
    expect(await alarmAt(d.stub, T0 + HOUR - 1)).toBe(true);
    expect(await jobsOn(d.stub)).toEqual([]);

    expect(await alarmAt(d.stub, T0 + HOUR)).toBe(true);
    const first = await jobsOn(d.stub);
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ state: "QUEUED", args: "[20,22]", deadline: T0 + HOUR + MIN }); // skip: not started within the grace, it expires
    const view = await show(d.deviceId, s.id);
    expect(view.lastFired).toEqual({ occurrence: `${s.id}@${at(T0 + HOUR)}`, scheduledAt: at(T0 + HOUR), firedAt: at(T0 + HOUR), job: first[0]!.id });
    expect(view.nextAt).toBe(at(T0 + 2 * HOUR));
    expect(view.missedCount).toBe(0);
    // The job is a real job of the device, seen through the jobs API.
    const job = await call("GET", `/v1/jobs/${first[0]!.id}`);
    expect(job.status).toBe(200);
    expect(job.body).toMatchObject({ state: "QUEUED", function: "add32", args: [20, 22] });

    // The same alarm again (a retried alarm), and a little later: nothing new.
    expect(await alarmAt(d.stub, T0 + HOUR)).toBe(true);
    expect(await alarmAt(d.stub, T0 + HOUR + 10_000)).toBe(true);
    expect(await jobsOn(d.stub)).toHaveLength(1);

    // The control plane restarts: the object starts over from its storage (its clock too).
    await abortAllDurableObjects();
    let stub = deviceStub(env, d.deviceId);
    expect(await alarmAt(stub, T0 + HOUR + 30 * MIN)).toBe(true);
    expect((await jobsOn(stub)).map((j) => j.id)).toEqual([first[0]!.id]);

    expect(await alarmAt(stub, T0 + 2 * HOUR)).toBe(true);
    await abortAllDurableObjects();
    stub = deviceStub(env, d.deviceId);
    expect(await alarmAt(stub, T0 + 2 * HOUR)).toBe(true); // the same occurrence after a restart
    const after = await jobsOn(stub);
    expect(after).toHaveLength(2);
    expect(after[0]!.state).toBe("EXPIRED"); // the device never came for it within its grace
    expect((await show(d.deviceId, s.id)).lastFired).toMatchObject({ occurrence: `${s.id}@${at(T0 + 2 * HOUR)}`, job: after[1]!.id });
    expect(after[1]!.id).not.toBe(first[0]!.id);
  });

  it("a one-shot (afterMs) fires once and is then done", async () => {
    const d = await device("sched-oneshot");
    const s = await schedule(d.deviceId, { timing: { afterMs: 30 * MIN }, target: jobTarget(d.digest) });
    expect(s).toMatchObject({ status: "active", nextAt: at(T0 + 30 * MIN), timing: { at: at(T0 + 30 * MIN) } });
    expect(await alarmAt(d.stub, T0 + 30 * MIN)).toBe(true);
    expect(await jobsOn(d.stub)).toHaveLength(1);
    expect(await show(d.deviceId, s.id)).toMatchObject({ status: "done", nextAt: null });
    await alarmAt(d.stub, T0 + 5 * HOUR);
    expect(await jobsOn(d.stub)).toHaveLength(1);
  });
});

describe("missed occurrences", () => {
  it("skip: occurrences the alarm reached later than the grace are counted missed, none runs", async () => {
    const d = await device("sched-skip");
    const s = await schedule(d.deviceId, { timing: { cron: "0 * * * *" }, missed: "skip", graceMs: 60_000, target: jobTarget(d.digest) });
    // The control plane was down from before 01:00 to 03:05: 01:00, 02:00 and 03:00 passed.
    expect(await alarmAt(d.stub, T0 + 3 * HOUR + 5 * MIN)).toBe(true);
    expect(await jobsOn(d.stub)).toEqual([]);
    expect(await show(d.deviceId, s.id)).toMatchObject({ missedCount: 3, lastFired: null, nextAt: at(T0 + 4 * HOUR) });
    // Within the grace it still runs.
    expect(await alarmAt(d.stub, T0 + 4 * HOUR + 30_000)).toBe(true);
    expect(await jobsOn(d.stub)).toHaveLength(1);
  });

  it("catch-up-once: everything missed runs once; while that run waits for the device, later occurrences fold into it", async () => {
    const d = await device("sched-catchup");
    const s = await schedule(d.deviceId, { timing: { cron: "0 * * * *" }, missed: "catch-up-once", target: jobTarget(d.digest) });
    expect(await alarmAt(d.stub, T0 + 3 * HOUR + 5 * MIN)).toBe(true);
    const jobs = await jobsOn(d.stub);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({ state: "QUEUED", deadline: null }); // catch-up runs whenever the device comes
    expect(await show(d.deviceId, s.id)).toMatchObject({ missedCount: 2, lastFired: { scheduledAt: at(T0 + 3 * HOUR), job: jobs[0]!.id } });
    // The device is away: the run still waits, so 04:00 and 05:00 do not queue more.
    await alarmAt(d.stub, T0 + 4 * HOUR);
    await alarmAt(d.stub, T0 + 5 * HOUR);
    expect(await jobsOn(d.stub)).toHaveLength(1);
    expect(await show(d.deviceId, s.id)).toMatchObject({ missedCount: 4, lastFired: { job: jobs[0]!.id } });
    // Once that run has ended (here: canceled), the next occurrence gets its own.
    expect((await call("POST", `/v1/jobs/${jobs[0]!.id}/cancel`)).status).toBe(200);
    await alarmAt(d.stub, T0 + 6 * HOUR);
    expect((await jobsOn(d.stub)).map((j) => j.state)).toEqual(["CANCELED", "QUEUED"]);
  });
});

describe("managing schedules", () => {
  it("pause, resume and delete", async () => {
    const d = await device("sched-pause");
    const s = await schedule(d.deviceId, { timing: { cron: "0 * * * *" }, target: jobTarget(d.digest) });
    const paused = await call("POST", `/v1/devices/${d.deviceId}/schedules/${s.id}/pause`);
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ status: "paused", nextAt: null });
    await alarmAt(d.stub, T0 + HOUR);
    await alarmAt(d.stub, T0 + 2 * HOUR);
    expect(await jobsOn(d.stub)).toEqual([]);

    await setClock(d.stub, T0 + 2 * HOUR + 10 * MIN);
    const resumed = await call("POST", `/v1/devices/${d.deviceId}/schedules/${s.id}/resume`);
    expect(resumed.body).toMatchObject({ status: "active", nextAt: at(T0 + 3 * HOUR), missedCount: 0 }); // paused occurrences are not missed ones
    await alarmAt(d.stub, T0 + 3 * HOUR);
    expect(await jobsOn(d.stub)).toHaveLength(1);

    const listed = await call("GET", `/v1/devices/${d.deviceId}/schedules`);
    expect(listed.body.schedules.map((x: { id: string }) => x.id)).toEqual([s.id]);
    expect((await call("DELETE", `/v1/devices/${d.deviceId}/schedules/${s.id}`)).status).toBe(200);
    expect((await call("GET", `/v1/devices/${d.deviceId}/schedules/${s.id}`)).status).toBe(404);
    expect((await call("DELETE", `/v1/devices/${d.deviceId}/schedules/${s.id}`)).status).toBe(404);
    await alarmAt(d.stub, T0 + 4 * HOUR);
    expect(await jobsOn(d.stub)).toHaveLength(1);
    expect((await call("GET", `/v1/devices/${d.deviceId}/schedules`)).body.schedules).toEqual([]);
  });

  it("reads the expression in its time zone", async () => {
    const d = await device("sched-tz");
    const berlin = await schedule(d.deviceId, { timing: { cron: "0 9 * * *", timezone: "Europe/Berlin" }, target: jobTarget(d.digest) });
    const newYork = await schedule(d.deviceId, { timing: { cron: "0 9 * * *", timezone: "America/New_York" }, target: jobTarget(d.digest) });
    expect(berlin.nextAt).toBe("2030-01-10T08:00:00.000Z");
    expect(newYork.nextAt).toBe("2030-01-10T14:00:00.000Z");
    await alarmAt(d.stub, Date.parse("2030-01-10T08:00:00Z"));
    expect(await jobsOn(d.stub)).toHaveLength(1);
    expect((await show(d.deviceId, berlin.id)).nextAt).toBe("2030-01-11T08:00:00.000Z");
    expect((await show(d.deviceId, newYork.id)).lastFired).toBeNull();
  });

  it("refuses bad input with a problem that says why, and stores nothing", async () => {
    const d = await device("sched-bad");
    const post = (body: unknown) => call("POST", `/v1/devices/${d.deviceId}/schedules`, { json: body });
    const cases: [unknown, number, string][] = [
      [{ timing: { cron: "61 * * * *" }, target: jobTarget(d.digest) }, 400, "minute"],
      [{ timing: { cron: "* * * *" }, target: jobTarget(d.digest) }, 400, "has 4 field(s)"],
      [{ timing: { cron: "0 9 * * *", timezone: "Europe/Atlantis" }, target: jobTarget(d.digest) }, 400, "not an IANA time zone"],
      [{ timing: { cron: "0 0 30 2 *" }, target: jobTarget(d.digest) }, 400, "never occurs"],
      [{ timing: { at: "2029-01-01T00:00:00Z" }, target: jobTarget(d.digest) }, 422, "has already passed"],
      [{ timing: { cron: "0 * * * *" }, missed: "sometimes", target: jobTarget(d.digest) }, 400, "missed"],
      [{ timing: { cron: "0 * * * *" }, target: { kind: "job", submission: { module: "0".repeat(64), function: "add32" } } }, 422, "has not been uploaded"],
      [{ timing: { cron: "0 * * * *" }, target: { kind: "job", submission: { module: d.digest, function: "nope" } } }, 400, "exports no function"],
      [{ timing: { cron: "0 * * * *" }, target: { kind: "service", serviceId: "svc-1" } }, 404, "no service svc-1"],
      [{ timing: { cron: "0 * * * *" }, target: { kind: "cron-job" } }, 400, "target"],
    ];
    for (const [body, status, words] of cases) {
      const res = await post(body);
      expect({ body, status: res.status }).toEqual({ body, status });
      expect(res.type).toBe("application/problem+json");
      expect(JSON.stringify(res.body)).toContain(words);
    }
    expect((await call("GET", `/v1/devices/${d.deviceId}/schedules`)).body.schedules).toEqual([]);
    expect((await call("GET", `/v1/devices/${d.deviceId}/schedules/saaaaaaaaaaaaaaaa`)).status).toBe(404);
    expect((await call("GET", `/v1/devices/dzzzzzzzzzzzzzzzz/schedules`)).status).toBe(404);
  });

  it("another namespace's key sees no schedules of this device", async () => {
    const d = await device("sched-ns");
    const s = await schedule(d.deviceId, { timing: { cron: "0 * * * *" }, target: jobTarget(d.digest) });
    const other = (await call("POST", "/v1/keys", { json: { role: "user", namespace: "sched-other" } })).body.key as string;
    expect((await call("GET", `/v1/devices/${d.deviceId}/schedules`, { token: other })).status).toBe(404);
    expect((await call("POST", `/v1/devices/${d.deviceId}/schedules/${s.id}/pause`, { token: other })).status).toBe(404);
    expect((await call("DELETE", `/v1/devices/${d.deviceId}/schedules/${s.id}`, { token: other })).status).toBe(404);
    expect((await call("POST", `/v1/devices/${d.deviceId}/schedules`, { token: other, json: { timing: { cron: "0 * * * *" }, target: jobTarget(d.digest) } })).status).toBe(404);
    // and the object itself refuses a mismatched namespace, whatever the route checked
    expect(await d.stub.listSchedules("sched-other")).toMatchObject({ ok: false, problem: "not-found" });
    expect((await show(d.deviceId, s.id)).status).toBe("active");
  });

  it("JSON-RPC mirrors the routes: schedules.create, schedules.list, schedule.pause/resume/status/delete", async () => {
    const d = await device("sched-rpc");
    const rpc = async (method: string, params: unknown) => (await call("POST", "/rpc", { json: { jsonrpc: "2.0", id: 1, method, params } })).body;
    const created = (await rpc("schedules.create", { id: d.deviceId, timing: { cron: "*/30 * * * *", timezone: "Asia/Kolkata" }, missed: "catch-up-once", target: jobTarget(d.digest) })).result;
    expect(created).toMatchObject({ status: "active", missed: "catch-up-once", nextAt: at(T0 + 30 * MIN) });
    expect((await rpc("schedules.list", { id: d.deviceId })).result.schedules).toHaveLength(1);
    expect((await rpc("schedule.pause", { id: d.deviceId, scheduleId: created.id })).result.status).toBe("paused");
    expect((await rpc("schedule.resume", { id: d.deviceId, scheduleId: created.id })).result.status).toBe("active");
    expect((await rpc("schedule.status", { id: d.deviceId, scheduleId: created.id })).result.id).toBe(created.id);
    expect((await rpc("schedules.create", { id: d.deviceId, timing: { cron: "every day" }, target: jobTarget(d.digest) })).error.data.detail).toContain("timing.cron");
    expect((await rpc("schedule.delete", { id: d.deviceId, scheduleId: created.id })).result).toEqual({ id: created.id });
    expect((await rpc("schedule.status", { id: d.deviceId, scheduleId: created.id })).error.data.status).toBe(404);
  });

  it("a service target starts the real service part's service once per occurrence (a new run each time)", async () => {
    const d = await device("sched-real-service");
    const counter = await uploadModule("countService");
    const made = await call("POST", `/v1/devices/${d.deviceId}/services`, { json: { name: "nightly", module: counter, startStopped: true } });
    expect(made.status).toBe(201);
    const runOf = async () => (await call("GET", `/v1/devices/${d.deviceId}/services/nightly`)).body as { run: number; desired: string; reason: string };
    const firstRun = (await runOf()).run;
    const s = await schedule(d.deviceId, { timing: { cron: "0 * * * *" }, target: { kind: "service", serviceId: "nightly" } });
    await alarmAt(d.stub, T0 + HOUR);
    await alarmAt(d.stub, T0 + HOUR); // the same occurrence again: nothing new
    expect(await runOf()).toMatchObject({ run: firstRun + 1, desired: "running", reason: `started by schedule occurrence ${s.id}@${at(T0 + HOUR)}` });
    await alarmAt(d.stub, T0 + 2 * HOUR);
    expect((await runOf()).run).toBe(firstRun + 2);
  });

  it("a service target dispatches to the starter the services part registers, once per occurrence", async () => {
    const d = await device("sched-service");
    const started: [string, string, number][] = [];
    // What the services part registers at merge (device-parts.ts); here a recorder in its place.
    await runInDurableObject(d.stub, (obj: DeviceObject) => {
      (obj as unknown as { p: { schedules: { setServiceStarter(s: unknown): void } } }).p.schedules.setServiceStarter({
        exists: (id: string) => id === "svc-counter",
        startFromSchedule: (id: string, occurrence: string, now: number) => started.push([id, occurrence, now]),
      });
    });
    const post = (serviceId: string) => call("POST", `/v1/devices/${d.deviceId}/schedules`, { json: { timing: { cron: "0 * * * *" }, target: { kind: "service", serviceId } } });
    expect((await post("svc-missing")).status).toBe(404);
    const created = await post("svc-counter");
    expect(created.status).toBe(201);
    await alarmAt(d.stub, T0 + HOUR);
    await alarmAt(d.stub, T0 + HOUR);
    await alarmAt(d.stub, T0 + 2 * HOUR);
    expect(started).toEqual([
      ["svc-counter", `${created.body.id}@${at(T0 + HOUR)}`, T0 + HOUR],
      ["svc-counter", `${created.body.id}@${at(T0 + 2 * HOUR)}`, T0 + 2 * HOUR],
    ]);
    expect(await jobsOn(d.stub)).toEqual([]);
    expect((await show(d.deviceId, created.body.id)).lastFired).toMatchObject({ occurrence: `${created.body.id}@${at(T0 + 2 * HOUR)}`, job: null });
  });

  it("a firing that fails part-way stores nothing: the same occurrence is fired again later, under the same id", async () => {
    const d = await device("sched-retry");
    const calls: string[] = [];
    let failNext = true;
    await runInDurableObject(d.stub, (obj: DeviceObject) => {
      (obj as unknown as { p: { schedules: { setServiceStarter(s: unknown): void } } }).p.schedules.setServiceStarter({
        startFromSchedule: (_id: string, occurrence: string) => {
          calls.push(occurrence);
          if (failNext) {
            failNext = false;
            throw new Error("the service part failed mid-way");
          }
        },
      });
    });
    const created = (await call("POST", `/v1/devices/${d.deviceId}/schedules`, { json: { timing: { cron: "0 * * * *" }, target: { kind: "service", serviceId: "svc" } } })).body;
    expect(await alarmAt(d.stub, T0 + HOUR)).toBe(true);
    // Nothing of that firing was kept, and the alarm went on: retried a few seconds later (within the grace).
    expect(await show(d.deviceId, created.id)).toMatchObject({ lastFired: null, missedCount: 0, nextAt: at(T0 + HOUR + RETRY_AFTER_ERROR_MS) });
    expect(await alarmAt(d.stub, T0 + HOUR + RETRY_AFTER_ERROR_MS)).toBe(true);
    const occurrence = `${created.id}@${at(T0 + HOUR)}`;
    expect(calls).toEqual([occurrence, occurrence]);
    expect(await show(d.deviceId, created.id)).toMatchObject({ lastFired: { occurrence, firedAt: at(T0 + HOUR + RETRY_AFTER_ERROR_MS) }, nextAt: at(T0 + 2 * HOUR) });
  });
});
