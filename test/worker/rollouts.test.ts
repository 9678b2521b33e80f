/**
 * Staged rollouts through the real Worker, rollout object and device objects, with
 * simulated agents speaking the HTTP protocol and every object's clock pinned and moved
 * by hand: waves and their gates, a rollback that reverts every updated device (earlier
 * waves too) with the gate's numbers, and pause / resume / abort / rollback by an operator.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { call, DESCRIPTION, health, uploadModule } from "./helpers.js";

const deviceObject = (id: string) => env.DEVICES.get(env.DEVICES.idFromName(id));
const rolloutObject = (ns: string, id: string) => env.ROLLOUTS.get(env.ROLLOUTS.idFromName(`${ns}/${id}`));
const T0 = Date.now() + 3_600_000;
const NS = "rollouts";

type Dev = { deviceId: string; credential: string };
let user: string;
let register: string;
let key: { privateKey: CryptoKey; kid: string };
let v1: string;
let v2: string;

function sign(deployment: unknown) {
  return new SignJWT({ deployment }).setProtectedHeader({ alg: "EdDSA", kid: key.kid }).setIssuedAt().setExpirationTime("5m").setJti(crypto.randomUUID()).sign(key.privateKey);
}
const version1 = (id: string, label: string) => ({ id, selector: { labels: { fleet: label } }, modules: [{ name: "app", digest: v1, functions: { count: { result: "integer" } } }] });
const version2 = (id: string, label: string) => ({
  id, selector: { labels: { fleet: label } },
  modules: [{ name: "app", digest: v2, functions: { add32: { params: [{ name: "a", type: "integer" }, { name: "b", type: "integer" }], result: "integer" } }, mounts: [{ name: "v2.txt", base64: btoa("two") }] }],
});

async function fleet(label: string, n: number): Promise<Dev[]> {
  const out: Dev[] = [];
  for (let i = 0; i < n; i++) {
    const reg = await call("POST", "/v1/devices/register", { token: register, json: { name: `${label}-${i}`, description: { ...DESCRIPTION, capabilities: { cameras: [], sensors: [], labels: { fleet: label } } } } });
    await runInDurableObject(deviceObject(reg.body.deviceId), (obj) => obj.clock.set(T0));
    await call("POST", "/v1/agent/heartbeat", { token: reg.body.credential, json: { health: health() } });
    out.push(reg.body as Dev);
  }
  return out;
}

/** Every clock at `t`, and every device heard from then (a healthy fleet's heartbeats), except `silent`. */
async function at(t: number, rollout: ReturnType<typeof rolloutObject>, devices: Dev[], silent: Dev[] = []) {
  await runInDurableObject(rollout, (obj) => obj.clock.set(t));
  for (const d of devices) {
    await runInDurableObject(deviceObject(d.deviceId), (obj) => obj.clock.set(t));
    if (!silent.includes(d)) await call("POST", "/v1/agent/heartbeat", { token: d.credential, json: { health: health() } });
  }
}

/** A simulated agent applying whatever it is told, reporting active (or failed). */
async function apply(d: Dev, state: "active" | "failed" = "active") {
  const desired = (await call("GET", "/v1/agent/deployments", { token: d.credential })).body as { deployments: { deployment: string; generation: number; modules: { digest: string }[]; keep?: number }[] };
  const states = desired.deployments.map((p) => ({ deployment: p.deployment, generation: p.generation, state, reason: state === "failed" ? "simulated" : null }));
  if (states.length) expect((await call("POST", "/v1/agent/deployments/status", { token: d.credential, json: { states } })).status).toBe(200);
  return desired.deployments;
}

const show = async (id: string) => (await call("GET", `/v1/rollouts/${id}`, { token: user })).body;

beforeAll(async () => {
  const admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: NS } })).body.key as string;
  register = (await call("POST", "/v1/keys", { token: admin, json: { role: "register" } })).body.key as string;
  user = (await call("POST", "/v1/keys", { token: admin, json: { role: "user" } })).body.key as string;
  const pair = await generateKeyPair("EdDSA", { extractable: true });
  const res = await call("POST", "/v1/orchestrator-keys", { token: admin, json: { jwk: await exportJWK(pair.publicKey), label: "rollouts" } });
  key = { privateKey: pair.privateKey, kid: res.body.kid };
  v1 = await uploadModule("counter");
  v2 = await uploadModule("math");
});

async function startRollout(id: string, label: string, body: Record<string, unknown>) {
  await runInDurableObject(rolloutObject(NS, id), (obj) => obj.clock.set(T0));
  return call("POST", "/v1/rollouts", { token: user, json: { id, deployment: await sign(version2("svc-" + label, label)), ...body } });
}

describe("staged rollouts", () => {
  it("rolls out wave by wave through the gates and commits; previous files are kept until then", async () => {
    const devs = await fleet("ok", 5);
    const dep = await call("POST", "/v1/deployments", { token: user, body: await sign(version1("svc-ok", "ok")), type: "application/jose" });
    expect(dep.status).toBe(201);
    expect(dep.body.devices).toHaveLength(5); // the selector picked all five
    for (const d of devs) await apply(d);

    const res = await startRollout("ro-ok", "ok", { strategy: { waveSize: { count: 1 }, exponentialRate: { incrementFactor: 2 } }, gate: { soakMs: 10_000 } });
    expect(res.status).toBe(201);
    expect(res.body.waves.map((w: { size: number }) => w.size)).toEqual([1, 2, 2]);
    const ro = rolloutObject(NS, "ro-ok");
    let t = T0;
    for (const wave of [0, 1, 2]) {
      await runDurableObjectAlarm(ro);
      let view = await show("ro-ok");
      expect(view.waves[wave].state).toBe("soaking");
      const inWave = view.devices.filter((x: { wave: number }) => x.wave === wave).map((x: { device: string }) => devs.find((d) => d.deviceId === x.device)!);
      for (const d of inWave) {
        const parts = await apply(d);
        expect(parts[0]!.modules[0]!.digest).toBe(v2);
        expect(parts[0]!.keep).toBeGreaterThan(0); // the previous generation stays on disk until commit
      }
      // Later waves' devices are untouched.
      for (const x of view.devices.filter((x: { wave: number }) => x.wave > wave)) expect(x.state).toBe("pending");
      t += 10_000;
      await at(t, ro, devs);
      await runDurableObjectAlarm(ro);
      view = await show("ro-ok");
      expect(view.waves[wave].state).toBe("passed");
      expect(view.waves[wave].gate).toMatchObject({ failed: 0, pending: 0 });
    }
    const done = await show("ro-ok");
    expect(done.state).toBe("committed");
    expect(done.counts).toEqual({ healthy: 5 });
    expect(done.decisions.map((d: { decision: string }) => d.decision)).toContain("committed");
    // Committed: the kept generation is released on every device.
    for (const d of devs) {
      const parts = (await call("GET", "/v1/agent/deployments", { token: d.credential })).body.deployments;
      expect(parts[0].modules[0].digest).toBe(v2);
      expect(parts[0].keep).toBeUndefined();
    }
  });

  it("rolls every updated device back when a gate trips on the call error rate, and says which numbers tripped it", async () => {
    const devs = await fleet("bad", 6);
    await call("POST", "/v1/deployments", { token: user, body: await sign(version1("svc-bad", "bad")), type: "application/jose" });
    const before = new Map<string, number>();
    for (const d of devs) before.set(d.deviceId, (await apply(d))[0]!.generation);

    const res = await startRollout("ro-bad", "bad", { strategy: { waveSize: { count: 2 }, exponentialRate: { incrementFactor: 2 } }, gate: { soakMs: 10_000, maxErrorRate: 0.1, minCalls: 2 } });
    expect(res.status).toBe(201);
    const ro = rolloutObject(NS, "ro-bad");
    await runDurableObjectAlarm(ro); // wave 0 (2 devices)
    let view = await show("ro-bad");
    const wave0 = view.devices.filter((x: { wave: number }) => x.wave === 0).map((x: { device: string }) => devs.find((d) => d.deviceId === x.device)!);
    for (const d of wave0) await apply(d);
    await at(T0 + 10_000, ro, devs);
    await runDurableObjectAlarm(ro); // gate 0 passes, wave 1 (4 devices) sent
    view = await show("ro-bad");
    expect(view.waves[0].state).toBe("passed");
    const wave1 = view.devices.filter((x: { wave: number }) => x.wave === 1).map((x: { device: string }) => devs.find((d) => d.deviceId === x.device)!);
    for (const d of wave1) await apply(d);
    // One device of wave 1 fails both calls of the new version during the soak.
    const sick = wave1[0]!;
    await at(T0 + 11_000, ro, devs);
    for (let i = 0; i < 2; i++) {
      const called = await call("POST", `/v1/deployments/svc-bad/modules/app/add32?device=${sick.deviceId}&a=1&b=2`, { token: user });
      expect(called.status).toBe(202);
    }
    const leased = (await call("GET", "/v1/agent/jobs?wait=0&max=16", { token: sick.credential })).body.jobs as { jobId: string; leaseToken: string }[];
    expect(leased).toHaveLength(2);
    const failed = await call("POST", "/v1/agent/results", {
      token: sick.credential,
      json: { results: leased.map((l) => ({ jobId: l.jobId, leaseToken: l.leaseToken, outcome: "failed", error: { kind: "trap", message: "unreachable" }, result: null })) },
    });
    expect(failed.status).toBe(200);
    await at(T0 + 20_000, ro, devs);
    await runDurableObjectAlarm(ro); // gate 1 trips: rollback, then every updated device reverted
    view = await show("ro-bad");
    expect(view.state).toBe("rolled_back");
    expect(view.waves.map((w: { state: string }) => w.state)).toEqual(["passed", "failed", "skipped"].slice(0, view.waves.length));
    expect(view.rollbackReason).toEqual({
      by: "gate", wave: 1, failed: 1, updated: 6, threshold: "more than 0 failed devices", tripped: { callErrorRate: 1 },
      devices: [{ device: sick.deviceId, gates: ["callErrorRate"], reasons: ["call error rate 1.000 (2 of 2) over 0.1"] }],
    });
    expect(view.counts).toEqual({ reverted: 6 });
    const sickRow = view.devices.find((x: { device: string }) => x.device === sick.deviceId);
    expect(sickRow.sample).toMatchObject({ calls: 2, failedCalls: 2, deploymentState: "active" });
    // Every device (wave 0's healthy ones too) is told to run version 1 again, under a newer generation.
    for (const d of devs) {
      const parts = (await call("GET", "/v1/agent/deployments", { token: d.credential })).body.deployments;
      expect(parts).toHaveLength(1);
      expect(parts[0].modules[0].digest).toBe(v1);
      expect(parts[0].generation).toBeGreaterThan(before.get(d.deviceId)!);
    }
    const dep = (await call("GET", "/v1/deployments/svc-bad", { token: user })).body;
    expect(dep.modules[0].digest).toBe(v1);
  });

  it("counts crashes and restarts of services on the new version during the soak; past maxServiceCrashes the gate trips and every updated device is rolled back", async () => {
    const counter = await uploadModule("countService");
    const devs = await fleet("crash", 2);
    await call("POST", "/v1/deployments", { token: user, body: await sign(version1("svc-crash", "crash")), type: "application/jose" });
    for (const d of devs) await apply(d);
    // On each device: a service in the deployment's module directory (on whatever version it
    // runs), and one of its own (another module) that is not the rollout's business.
    for (const d of devs) {
      const mk = (name: string, sandbox: unknown) => call("POST", `/v1/devices/${d.deviceId}/services`, { token: user, json: { name, module: counter, sandbox } });
      expect((await mk("sensor", { deployment: "svc-crash", module: "app" })).status).toBe(201);
      expect((await mk("other", "own")).status).toBe(201);
    }
    const beat = (d: Dev, services: { name: string; status: string; restarts: number }[]) =>
      call("POST", "/v1/agent/heartbeat", {
        token: d.credential,
        json: {
          health: health(),
          services: services.map((s) => ({ run: 1, reason: "test", exitCode: null, lastError: null, startedAt: null, restartAt: null, pid: null, cpuMs: 0, cpuPercent: 0, rssBytes: 0, resets: 0, lines: [], ...s })),
        },
      });
    // A crash before the rollout does not count against it.
    for (const d of devs) {
      await beat(d, [{ name: "sensor", status: "RUNNING", restarts: 0 }]);
      await beat(d, [{ name: "sensor", status: "BACKOFF", restarts: 1 }]);
    }

    const T1 = T0 + 100_000;
    const ro = rolloutObject(NS, "ro-crash");
    await runInDurableObject(ro, (obj) => obj.clock.set(T1));
    await at(T1, ro, devs);
    const res = await call("POST", "/v1/rollouts", {
      token: user,
      json: { id: "ro-crash", deployment: await sign(version2("svc-crash", "crash")), strategy: { waveSize: { count: 1 } }, gate: { soakMs: 10_000, maxServiceCrashes: 1 } },
    });
    expect(res.status).toBe(201);
    expect(res.body.gate.maxServiceCrashes).toBe(1);
    await runDurableObjectAlarm(ro); // wave 0 sent
    let view = await show("ro-crash");
    const byWave = (w: number) => devs.find((d) => d.deviceId === view.devices.find((x: { wave: number }) => x.wave === w).device)!;
    const first = byWave(0);
    const second = byWave(1);
    await apply(first);
    // Wave 0's device: the service restarts once during the soak (1 is not over 1), and the
    // other service crash-loops (it does not run the new version: not counted).
    await at(T1 + 2_000, ro, devs);
    await beat(first, [{ name: "sensor", status: "RUNNING", restarts: 1 }, { name: "other", status: "RUNNING", restarts: 0 }]);
    await beat(first, [{ name: "sensor", status: "BACKOFF", restarts: 2 }, { name: "other", status: "BACKOFF", restarts: 4 }]);
    await beat(first, [{ name: "sensor", status: "RUNNING", restarts: 2 }, { name: "other", status: "CRASHED", restarts: 5 }]);
    await at(T1 + 10_000, ro, devs);
    await runDurableObjectAlarm(ro); // gate 0 passes; wave 1 sent
    view = await show("ro-crash");
    expect(view.waves[0].state).toBe("passed");
    expect(view.devices.find((x: { device: string }) => x.device === first.deviceId).sample).toMatchObject({ services: 1, serviceCrashes: 1, crashedServices: ["sensor"] });

    // Wave 1's device: the service fails, is restarted, fails again and its budget is spent (CRASHED): 2 crashes.
    await apply(second);
    await at(T1 + 12_000, ro, devs);
    await beat(second, [{ name: "sensor", status: "BACKOFF", restarts: 2 }]); // one more restart than before the rollout
    await beat(second, [{ name: "sensor", status: "CRASHED", restarts: 2 }]); // and a failure not restarted
    await beat(second, [{ name: "sensor", status: "CRASHED", restarts: 2 }]); // the same status again: nothing new
    await at(T1 + 20_000, ro, devs);
    await runDurableObjectAlarm(ro); // gate 1 trips on service crashes: rollback of both devices
    view = await show("ro-crash");
    expect(view.state).toBe("rolled_back");
    expect(view.rollbackReason).toEqual({
      by: "gate", wave: 1, failed: 1, updated: 2, threshold: "more than 0 failed devices", tripped: { serviceCrashes: 1 },
      devices: [{ device: second.deviceId, gates: ["serviceCrashes"], reasons: ["service crashes 2 (sensor) over 1"] }],
    });
    const row = view.devices.find((x: { device: string }) => x.device === second.deviceId);
    expect(row).toMatchObject({ state: "reverted", gates: ["serviceCrashes"] });
    expect(row.sample).toMatchObject({ deploymentState: "active", services: 1, serviceCrashes: 2, crashedServices: ["sensor"], calls: 0 });
    expect(view.decisions.find((d: { decision: string }) => d.decision === "rolling back").detail).toContain("serviceCrashes: 1");
    expect(view.counts).toEqual({ reverted: 2 });
    for (const d of devs) expect((await call("GET", "/v1/agent/deployments", { token: d.credential })).body.deployments[0].modules[0].digest).toBe(v1);
  });

  it("pause holds the next wave, resume goes on, abort stops, rollback reverts; wrong moves are 409", async () => {
    const devs = await fleet("ops", 4);
    const res = await startRollout("ro-ops", "ops", { strategy: { waveSize: { percent: 25 } }, gate: { soakMs: 1_000 } });
    expect(res.status).toBe(201);
    const ro = rolloutObject(NS, "ro-ops");
    await runDurableObjectAlarm(ro);
    for (const d of devs) await apply(d); // only wave 0's device has a part
    expect((await call("POST", "/v1/rollouts/ro-ops/pause", { token: user })).body.state).toBe("paused");
    expect((await call("POST", "/v1/rollouts/ro-ops/pause", { token: user })).status).toBe(409);
    await at(T0 + 5_000, ro, devs);
    await runDurableObjectAlarm(ro);
    let view = await show("ro-ops");
    expect(view.waves[0].state).toBe("soaking"); // paused: the gate did not pass
    expect((await call("POST", "/v1/rollouts/ro-ops/resume", { token: user })).body.state).toBe("running");
    await runDurableObjectAlarm(ro);
    view = await show("ro-ops");
    expect(view.waves[0].state).toBe("passed");
    expect(view.waves[1].state).toBe("soaking");
    expect((await call("POST", "/v1/rollouts/ro-ops/abort", { token: user })).body.state).toBe("aborted");
    view = await show("ro-ops");
    expect(view.counts).toMatchObject({ skipped: 2 });
    expect((await call("POST", "/v1/rollouts/ro-ops/resume", { token: user })).status).toBe(409);
    expect((await call("POST", "/v1/rollouts/ro-ops/rollback", { token: user })).body.state).toBe("rolling_back");
    await runDurableObjectAlarm(ro);
    view = await show("ro-ops");
    expect(view.state).toBe("rolled_back");
    expect(view.rollbackReason.by).toBe("operator");
    expect(view.counts).toEqual({ reverted: 2, skipped: 2 });
    // These devices had no earlier version: the rollback removed the deployment from them.
    for (const d of devs) expect((await call("GET", "/v1/agent/deployments", { token: d.credential })).body.deployments).toEqual([]);
    expect((await call("GET", "/v1/rollouts/nope", { token: user })).status).toBe(404);
  });

  it("refuses a second active rollout of the same deployment (409 naming it); after an abort another may start, and the aborted one's rollback is then refused", async () => {
    await fleet("dup", 2);
    const strategy = { waveSize: { count: 1 } };
    expect((await startRollout("ro-dup-1", "dup", { strategy, gate: { soakMs: 1_000 } })).status).toBe(201);
    const second = await startRollout("ro-dup-2", "dup", { strategy });
    expect(second.status).toBe(409);
    expect(second.type).toBe("application/problem+json");
    expect(second.body.activeRollout).toBe("ro-dup-1");
    expect(second.body.detail).toBe("rollout ro-dup-1 of deployment svc-dup is running: abort it (or let it end) before starting another");
    expect((await show("ro-dup-2")).status).toBe(404); // nothing was started
    // A rollout of another deployment to the same devices is not held up.
    const other = await call("POST", "/v1/rollouts", { token: user, json: { id: "ro-dup-other", deployment: await sign(version2("svc-dup-other", "dup")), strategy } });
    expect(other.status).toBe(201);
    // Paused still holds the deployment.
    expect((await call("POST", "/v1/rollouts/ro-dup-1/pause", { token: user })).status).toBe(200);
    expect((await startRollout("ro-dup-2", "dup", { strategy })).body).toMatchObject({ status: 409, activeRollout: "ro-dup-1" });
    // Aborted lets go of it.
    expect((await call("POST", "/v1/rollouts/ro-dup-1/abort", { token: user })).status).toBe(200);
    expect((await startRollout("ro-dup-2", "dup", { strategy })).status).toBe(201);
    // The aborted rollout cannot roll back over the running one.
    const back = await call("POST", "/v1/rollouts/ro-dup-1/rollback", { token: user });
    expect(back.status).toBe(409);
    expect(back.body.detail).toMatch(/^rollout ro-dup-2 of deployment svc-dup is active/);
    expect((await show("ro-dup-1")).state).toBe("aborted");
    // The same id again is a conflict too.
    expect((await startRollout("ro-dup-2", "dup", { strategy })).status).toBe(409);
  });

  it("a claim whose rollout never came to exist holds its deployment only until it is checked, a minute on", async () => {
    await fleet("ghost", 1);
    const registry = env.REGISTRY.get(env.REGISTRY.idFromName("global"));
    // A creation that failed after its claim: the listing says ro-ghost runs, its object has nothing.
    const now = Date.now();
    await runInDurableObject(registry, (obj) => obj.clock.set(now));
    expect(await registry.claimRollout(NS, "ro-ghost", "svc-ghost", 1)).toEqual({ claimed: true });
    const fresh = await startRollout("ro-ghost-2", "ghost", { strategy: { waveSize: { count: 1 } } });
    expect(fresh.status).toBe(409); // within a creation's time, the claim stands
    expect(fresh.body.activeRollout).toBe("ro-ghost");
    await runInDurableObject(registry, (obj) => obj.clock.set(now + 61_000));
    const later = await startRollout("ro-ghost-2", "ghost", { strategy: { waveSize: { count: 1 } } });
    expect(later.status).toBe(201);
    const listed = (await call("GET", "/v1/rollouts?deployment=svc-ghost", { token: user })).body.rollouts;
    expect(listed.map((r: { id: string; state: string }) => [r.id, r.state])).toEqual([["ro-ghost-2", "running"]]);
    await runInDurableObject(registry, (obj) => obj.clock.release());
  });

  it("lists rollouts of the caller's namespace newest first, filtered by state and deployment, in keyset pages", async () => {
    await fleet("lst", 1);
    const strategy = { waveSize: { count: 1 } };
    for (const n of [1, 2, 3]) {
      const made = await call("POST", "/v1/rollouts", { token: user, json: { id: `ro-lst-${n}`, deployment: await sign(version2(`svc-lst-${n}`, "lst")), strategy } });
      expect(made.status).toBe(201);
    }
    expect((await call("POST", "/v1/rollouts/ro-lst-2/abort", { token: user })).status).toBe(200);
    const list = async (q: string, token = user) => call("GET", `/v1/rollouts${q}`, { token });
    const all = await list("?limit=500");
    expect(all.status).toBe(200);
    const mine = all.body.rollouts.filter((r: { id: string }) => r.id.startsWith("ro-lst-"));
    expect(mine.map((r: { id: string }) => r.id)).toEqual(["ro-lst-3", "ro-lst-2", "ro-lst-1"]);
    expect(mine[1]).toMatchObject({ namespace: NS, deployment: "svc-lst-2", state: "aborted", targets: 1 });
    expect(all.body.rollouts.every((r: { namespace: string }) => r.namespace === NS)).toBe(true);
    // Filters.
    expect((await list("?deployment=svc-lst-2")).body.rollouts.map((r: { id: string }) => r.id)).toEqual(["ro-lst-2"]);
    const aborted = (await list("?state=aborted")).body.rollouts.map((r: { id: string }) => r.id);
    expect(aborted).toContain("ro-lst-2");
    expect(aborted).not.toContain("ro-lst-3");
    expect((await list("?state=running&deployment=svc-lst-2")).body.rollouts).toEqual([]);
    // Keyset pages of one: every rollout once, in the same order.
    const walked: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await list(`?limit=1${cursor ? `&cursor=${cursor}` : ""}`);
      expect(page.body.rollouts.length).toBeLessThanOrEqual(1);
      walked.push(...page.body.rollouts.map((r: { id: string }) => r.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(walked).toEqual(all.body.rollouts.map((r: { id: string }) => r.id));
    expect((await list("?cursor=bm90LWEtY3Vyc29y")).status).toBe(400);
    expect((await list("?state=nope")).status).toBe(400);
    // Another namespace sees none of them; a scoped key cannot ask for another namespace.
    const otherAdmin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: "rollouts-other" } })).body.key as string;
    expect((await list("", otherAdmin)).body.rollouts).toEqual([]);
    expect((await list(`?namespace=${NS}`, otherAdmin)).status).toBe(403);
    // A key spanning namespaces filters by one.
    expect((await call("GET", `/v1/rollouts?namespace=${NS}&deployment=svc-lst-1`)).body.rollouts.map((r: { id: string }) => r.id)).toEqual(["ro-lst-1"]);
  });

  it("sends at most maxPerMinute devices a minute", async () => {
    const devs = await fleet("rate", 3);
    expect((await startRollout("ro-rate", "rate", { strategy: { waveSize: { count: 3 }, maxPerMinute: 1 }, gate: { soakMs: 0 } })).status).toBe(201);
    const ro = rolloutObject(NS, "ro-rate");
    const sent = async () => (await show("ro-rate")).devices.filter((x: { state: string }) => x.state !== "pending").length;
    await runDurableObjectAlarm(ro);
    expect(await sent()).toBe(1);
    await at(T0 + 59_000, ro, devs);
    await runDurableObjectAlarm(ro);
    expect(await sent()).toBe(1);
    await at(T0 + 60_000, ro, devs);
    await runDurableObjectAlarm(ro);
    expect(await sent()).toBe(2);
    await at(T0 + 120_000, ro, devs);
    await runDurableObjectAlarm(ro);
    expect(await sent()).toBe(3);
  });

  it("refuses a manifest without a selector, and a selector that matches nothing (422 with reasons)", async () => {
    const noSel = await call("POST", "/v1/rollouts", { token: user, json: { deployment: await sign({ ...version2("x", "none"), selector: undefined, modules: [{ ...version2("x", "none").modules[0], devices: ["daaaaaaaaaaaaaaaa"] }] }), strategy: { waveSize: { count: 1 } } } });
    expect(noSel.status).toBe(422);
    const none = await call("POST", "/v1/rollouts", { token: user, json: { deployment: await sign(version2("x", "nowhere")), strategy: { waveSize: { count: 1 } } } });
    expect(none.status).toBe(422);
    expect(none.body.candidates.length).toBeGreaterThan(0);
    expect(none.body.candidates[0].reasons[0]).toMatch(/^label fleet is /);
  });
});

describe("honest device status", () => {
  it("shows desired against actual, the drift in words, the last reconcile and how stale the view is", async () => {
    const [d] = await fleet("honest", 1);
    const view = async () => (await call("GET", `/v1/devices/${d!.deviceId}`, { token: user })).body;
    let v = await view();
    expect(v.reconcile).toMatchObject({ desiredVersion: 0, inSync: true, drift: [], deployments: [] });
    expect(v.freshness).toMatchObject({ silentMs: 0, stale: false });
    expect(v.status).toBe("online");

    await call("POST", "/v1/deployments", { token: user, body: await sign(version1("svc-honest", "honest")), type: "application/jose" });
    v = await view();
    expect(v.reconcile.inSync).toBe(false);
    expect(v.reconcile.drift[0]).toBe("the agent has not fetched its desired state (version 1)");
    const generation = v.reconcile.deployments[0].desiredGeneration;
    expect(v.reconcile.deployments[0]).toMatchObject({ deployment: "svc-honest", appliedGeneration: null, state: "pending" });

    await apply(d!, "failed");
    v = await view();
    expect(v.reconcile.drift).toEqual([`svc-honest: generation ${generation} is failed (simulated); nothing applied`]);
    expect(v.reconcile.lastReconcileReason).toBe(`svc-honest g${generation} failed: simulated`);
    expect(v.reconcile.lastReconcileAt).not.toBeNull();

    // The agent applies it on its next try: in sync.
    await call("POST", "/v1/agent/deployments/status", { token: d!.credential, json: { states: [{ deployment: "svc-honest", generation, state: "active", reason: null }] } });
    v = await view();
    expect(v.reconcile).toMatchObject({ inSync: true, drift: [], fetchedVersion: 1 });
    expect(v.reconcile.deployments[0]).toMatchObject({ appliedGeneration: generation, state: "active" });

    // Silent past the heartbeat timeout: stale and offline at once, before any alarm ran.
    await runInDurableObject(deviceObject(d!.deviceId), (obj) => obj.clock.set(T0 + 5_000));
    v = await view();
    expect(v.freshness).toMatchObject({ silentMs: 5_000, stale: true, healthAgeMs: 5_000 });
    expect(v.status).toBe("offline");
  });
});
