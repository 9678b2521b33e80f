/**
 * Selectors and job failover through the real Worker and device objects: devices declare
 * labels, capabilities and architecture at registration (labels change over the API),
 * selector jobs go to the least-loaded healthy match or answer 422 with each candidate's
 * reasons, and a job whose device goes silent expires or moves once, its old lease fenced.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { call, DESCRIPTION, health, uploadModule } from "./helpers.js";

const deviceObject = (id: string) => env.DEVICES.get(env.DEVICES.idFromName(id));
/** Device clocks are pinned an hour ahead: presence alarms then lie in the future, and tests move time by hand. */
const T0 = Date.now() + 3_600_000;
let user: string;
let register: string;
let digest: string;

type Dev = { deviceId: string; credential: string };

async function device(name: string, o: { labels?: Record<string, string>; cameras?: string[]; arch?: string; interfaces?: string[] } = {}): Promise<Dev> {
  const description = {
    ...DESCRIPTION,
    platform: { ...DESCRIPTION.platform, cpu: { ...DESCRIPTION.platform.cpu, ...(o.arch ? { arch: o.arch } : {}) } },
    supervisorInterfaces: o.interfaces ?? DESCRIPTION.supervisorInterfaces,
    capabilities: { cameras: o.cameras ?? [], sensors: [], labels: o.labels ?? {} },
  };
  const reg = await call("POST", "/v1/devices/register", { token: register, json: { name, description } });
  expect(reg.status).toBe(201);
  await runInDurableObject(deviceObject(reg.body.deviceId), (obj) => obj.clock.set(T0));
  return reg.body as Dev;
}

const beat = (d: Dev) => call("POST", "/v1/agent/heartbeat", { token: d.credential, json: { health: health() } });
const job = (body: Record<string, unknown>) => call("POST", "/v1/jobs", { token: user, json: { module: digest, function: "add32", args: [1, 2], ...body } });

beforeAll(async () => {
  const admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: "fleet" } })).body.key as string;
  register = (await call("POST", "/v1/keys", { token: admin, json: { role: "register" } })).body.key as string;
  user = (await call("POST", "/v1/keys", { token: admin, json: { role: "user" } })).body.key as string;
  digest = await uploadModule("math");
});

describe("selectors", () => {
  let north1: Dev, north2: Dev, south: Dev, cam: Dev;
  beforeAll(async () => {
    north1 = await device("north-1", { labels: { site: "north" }, arch: "arm64" });
    north2 = await device("north-2", { labels: { site: "north" }, arch: "arm64" });
    south = await device("south-1", { labels: { site: "south" }, arch: "x64" });
    cam = await device("cam-1", { labels: { site: "east" }, cameras: ["front"], arch: "arm64" });
    for (const d of [north1, north2, south, cam]) expect((await beat(d)).status).toBe(200);
  });

  it("sends a selector job to the least-loaded healthy match", async () => {
    const first = await job({ selector: { labels: { site: "north" } } });
    expect(first.status).toBe(202);
    expect([north1.deviceId, north2.deviceId]).toContain(first.body.device);
    // The device that took the first job now has one queued: the next goes to the other.
    const second = await job({ selector: { labels: { site: "north" } } });
    expect(second.status).toBe(202);
    expect(second.body.device).not.toBe(first.body.device);
    expect([north1.deviceId, north2.deviceId]).toContain(second.body.device);
    // Capabilities and architecture.
    const camJob = await job({ selector: { capabilities: ["camera:front"], arch: ["arm64"] } });
    expect(camJob.body.device).toBe(cam.deviceId);
    // A drained match is passed over.
    await call("POST", `/v1/devices/${south.deviceId}/drain`, { token: user });
    const drained = await job({ selector: { labels: { site: "south" } } });
    expect(drained.status).toBe(422);
    expect(drained.body.candidates).toContainEqual({ device: south.deviceId, reasons: ["drained"] });
    await call("POST", `/v1/devices/${south.deviceId}/resume`, { token: user });
  });

  it("answers 422 with every candidate's reasons when nothing matches, and stores nothing", async () => {
    const res = await job({ selector: { labels: { site: "north" }, arch: ["riscv64"], interfaces: ["sock_accept"] } });
    expect(res.status).toBe(422);
    expect(res.type).toBe("application/problem+json");
    const byDevice = Object.fromEntries((res.body.candidates as { device: string; reasons: string[] }[]).map((c) => [c.device, c.reasons]));
    expect(byDevice[north1.deviceId]).toEqual(["does not link sock_accept", "architecture arm64, not riscv64"]);
    expect(byDevice[south.deviceId]).toEqual(["label site is south, not north", "does not link sock_accept", "architecture x64, not riscv64"]);
    expect(byDevice[cam.deviceId]).toHaveLength(3);
    expect(res.body.detail).toContain(north1.deviceId);
    const listed = await call("GET", "/v1/jobs?limit=500", { token: user });
    expect(listed.body.jobs.filter((j: { device: string }) => j.device === south.deviceId)).toHaveLength(0);
  });

  it("matches labels changed over the API; device and selector together are refused", async () => {
    expect((await job({ selector: { labels: { role: "gateway" } } })).status).toBe(422);
    const put = await call("PUT", `/v1/devices/${south.deviceId}/labels`, { token: user, json: { labels: { site: "south", role: "gateway" } } });
    expect(put.status).toBe(200);
    expect(put.body.description.capabilities.labels).toEqual({ site: "south", role: "gateway" });
    const res = await job({ selector: { expressions: [{ key: "role", operator: "In", values: ["gateway", "hub"] }] } });
    expect(res.status).toBe(202);
    expect(res.body.device).toBe(south.deviceId);
    expect((await job({ device: south.deviceId, selector: { labels: { site: "south" } } })).status).toBe(400);
    expect((await job({ device: south.deviceId, failover: { onOffline: "move", afterMs: 5000 } })).status).toBe(400);
  });
});

describe("failover of jobs whose device goes silent", () => {
  const lease = async (d: Dev) => (await call("GET", "/v1/agent/jobs?wait=0&max=16", { token: d.credential })).body.jobs as { jobId: string; leaseToken: string }[];

  it("move: after afterMs of silence the job expires on its device and runs once on another match; a late result from the old device changes nothing", async () => {
    const a = await device("fo-a", { labels: { pool: "fo" } });
    const b = await device("fo-b", { labels: { pool: "fo" } });
    await beat(a);
    await beat(b);
    await call("POST", `/v1/devices/${b.deviceId}/drain`, { token: user }); // so the job lands on a
    const sub = await job({ selector: { labels: { pool: "fo" } }, failover: { onOffline: "move", afterMs: 5_000 } });
    expect(sub.status).toBe(202);
    expect(sub.body.device).toBe(a.deviceId);
    expect(sub.body.failover).toEqual({ onOffline: "move", afterMs: 5_000, firedAt: null, movedTo: null, note: null });
    await call("POST", `/v1/devices/${b.deviceId}/resume`, { token: user });
    const [held] = await lease(a);
    expect(held!.jobId).toBe(sub.body.id);

    // 4 s of silence: nothing yet.
    await runInDurableObject(deviceObject(a.deviceId), (obj) => obj.clock.set(T0 + 4_000));
    await runDurableObjectAlarm(deviceObject(a.deviceId));
    expect((await call("GET", `/v1/jobs/${sub.body.id}`, { token: user })).body.failover.firedAt).toBeNull();

    // 5 s: the policy fires.
    await runInDurableObject(deviceObject(a.deviceId), (obj) => obj.clock.set(T0 + 5_000));
    await runDurableObjectAlarm(deviceObject(a.deviceId));
    const old = (await call("GET", `/v1/jobs/${sub.body.id}`, { token: user })).body;
    expect(old.state).toBe("EXPIRED");
    expect(old.error.kind).toBe("device-offline");
    expect(old.failover.firedAt).not.toBeNull();
    expect(old.failover.movedTo).toMatch(new RegExp(`^${b.deviceId}-`));
    const moved = (await call("GET", `/v1/jobs/${old.failover.movedTo}`, { token: user })).body;
    expect(moved).toMatchObject({ device: b.deviceId, state: "QUEUED", function: "add32", args: [1, 2] });

    // The old device comes back and reports the run it had: refused as a duplicate, no second outcome.
    const late = await call("POST", "/v1/agent/results", {
      token: a.credential,
      json: { results: [{ jobId: held!.jobId, leaseToken: held!.leaseToken, outcome: "succeeded", error: null, result: { value: 3, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 1 } }] },
    });
    expect(late.status).toBe(200);
    expect(["stale", "duplicate"]).toContain(late.body.dispositions[0].disposition);
    expect((await call("GET", `/v1/jobs/${sub.body.id}`, { token: user })).body.state).toBe("EXPIRED");
    // Its heartbeat is told to stop the job.
    const hb = await call("POST", "/v1/agent/heartbeat", { token: a.credential, json: { health: health(), runningJobs: [{ jobId: held!.jobId, leaseToken: held!.leaseToken }] } });
    expect(hb.body.cancel).toContain(held!.jobId);
    // Running the alarm again does not move it twice.
    await runInDurableObject(deviceObject(a.deviceId), (obj) => obj.clock.set(T0 + 60_000));
    await runDurableObjectAlarm(deviceObject(a.deviceId));
    expect((await call("GET", `/v1/jobs/${sub.body.id}`, { token: user })).body.failover.movedTo).toBe(old.failover.movedTo);
    const onB = (await call("GET", `/v1/jobs?device=${b.deviceId}`, { token: user })).body.jobs;
    expect(onB.filter((j: { function: string }) => j.function === "add32")).toHaveLength(1);
  });

  it("expire: the job ends EXPIRED; wait (the default) leaves it queued", async () => {
    const c = await device("fo-c");
    await beat(c);
    const expiring = await job({ device: c.deviceId, failover: { onOffline: "expire", afterMs: 2_000 } });
    const waiting = await job({ device: c.deviceId });
    await runInDurableObject(deviceObject(c.deviceId), (obj) => obj.clock.set(T0 + 2_500));
    await runDurableObjectAlarm(deviceObject(c.deviceId));
    const e = (await call("GET", `/v1/jobs/${expiring.body.id}`, { token: user })).body;
    expect(e).toMatchObject({ state: "EXPIRED", error: { kind: "device-offline" }, failover: { onOffline: "expire", note: "expired", movedTo: null } });
    expect((await call("GET", `/v1/jobs/${waiting.body.id}`, { token: user })).body.state).toBe("QUEUED");
  });
});
