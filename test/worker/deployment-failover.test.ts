/**
 * Deployments with a failover list, through the real Worker, deployment and device objects, on
 * injected clocks: the home falls silent for afterMs -> the module is re-placed on the first healthy
 * standby of the ordered list (its part sent there, new calls routed there); a call already leased to
 * the home stays there and its result is accepted once when the home is back, never run on the
 * standby; once the home heartbeats again with its part active, the placement returns home and the
 * standby's copy goes. GET /v1/deployments/:id shows home, current device, and each move's time and reason.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { env, runInDurableObject } from "cloudflare:test";
import { call, health, poll, registerDevice, report, uploadModule } from "./helpers.js";
import type { DeviceObject } from "../../src/durable/device-object.js";
import type { DeploymentObject } from "../../src/durable/deployment-object.js";

type Dev = { deviceId: string; credential: string };
const T0 = Date.parse("2026-11-27T12:00:00Z");
const AFTER = 15_000;
let key: { privateKey: CryptoKey; kid: string };
let digest: string;

const deviceObject = (id: string) => env.DEVICES.get(env.DEVICES.idFromName(id));
const deploymentObject = (id: string) => env.DEPLOYMENTS.get(env.DEPLOYMENTS.idFromName(`default/${id}`));
/**
 * Device clocks first, the deployment's last (heartbeats of that moment go before): an alarm that fires on
 * its own once the deployment's clock moves sees the devices as the test means them.
 */
async function at(ms: number, deployment: string, devs: Dev[]) {
  for (const d of devs) await runInDurableObject(deviceObject(d.deviceId), (o: DeviceObject) => o.clock.set(ms));
  await runInDurableObject(deploymentObject(deployment), (o: DeploymentObject) => o.clock.set(ms));
}
/**
 * Runs the deployment object's alarm handler now, on its pinned clock. (With clocks pinned in the past, the
 * scheduled alarm may already have fired on its own, so runDurableObjectAlarm could find none to run.)
 */
const alarm = (deployment: string) => runInDurableObject(deploymentObject(deployment), (o: DeploymentObject) => o.alarm());
const beat = async (d: Dev, ms: number, runningJobs: { jobId: string; leaseToken: string }[] = []) => {
  await runInDurableObject(deviceObject(d.deviceId), (o: DeviceObject) => o.clock.set(ms));
  expect((await call("POST", "/v1/agent/heartbeat", { token: d.credential, json: { health: health(), runningJobs } })).status).toBe(200);
};
/** The agent fetches its desired deployments and reports each part active. */
async function apply(d: Dev) {
  const desired = (await call("GET", "/v1/agent/deployments", { token: d.credential })).body as { deployments: { deployment: string; generation: number; modules: { name: string }[] }[] };
  const states = desired.deployments.map((p) => ({ deployment: p.deployment, generation: p.generation, state: "active", reason: null }));
  if (states.length) expect((await call("POST", "/v1/agent/deployments/status", { token: d.credential, json: { states } })).status).toBe(200);
  return desired.deployments;
}
const show = async (id: string) => (await call("GET", `/v1/deployments/${id}`)).body;
const callAdd = async (id: string, a: number) => call("POST", `/v1/deployments/${id}/modules/math/add32?a=${a}&b=1`);

async function deploy(id: string, home: Dev, failover: unknown) {
  const manifest = { id, modules: [{ name: "math", digest, devices: [home.deviceId], functions: { add32: { params: [{ name: "a", type: "integer" }, { name: "b", type: "integer" }], result: "integer" } }, failover }] };
  const token = await new SignJWT({ deployment: manifest }).setProtectedHeader({ alg: "EdDSA", kid: key.kid }).setIssuedAt().setExpirationTime("5m").setJti(crypto.randomUUID()).sign(key.privateKey);
  return call("POST", "/v1/deployments", { body: token, type: "application/jose" });
}

beforeAll(async () => {
  digest = await uploadModule("math");
  const pair = await generateKeyPair("EdDSA", { extractable: true });
  const res = await call("POST", "/v1/orchestrator-keys", { json: { jwk: await exportJWK(pair.publicKey), label: "failover" } });
  key = { privateKey: pair.privateKey, kid: res.body.kid };
});

describe("deployments with a failover list", () => {
  it("moves to the first healthy standby after afterMs of silence, runs no call twice, and returns home when it is back", async () => {
    const home = await registerDevice("fo-home");
    const dead = await registerDevice("fo-standby-dead");
    const spare = await registerDevice("fo-standby-ok");
    const all = [home, dead, spare];
    await at(T0, "fo-app", all);
    for (const d of all) await beat(d, T0);
    const res = await deploy("fo-app", home, { onOffline: "move", afterMs: AFTER, devices: [dead.deviceId, spare.deviceId] });
    expect(res.status).toBe(201);
    expect(res.body.failover).toEqual([{ module: "math", home: home.deviceId, current: home.deviceId, policy: { onOffline: "move", afterMs: AFTER, devices: [dead.deviceId, spare.deviceId] }, movedAt: null, reason: null, note: null, nextCheckAt: new Date(T0).toISOString(), history: [] }]);
    await apply(home);

    // A call goes home and the home's agent takes it (leased), then the home falls silent.
    const first = await callAdd("fo-app", 1);
    expect(first.status).toBe(202);
    expect(first.body.device).toBe(home.deviceId);
    const leased = (await poll(home.credential)).body.jobs as { jobId: string; leaseToken: string }[];
    expect(leased.map((j) => j.jobId)).toEqual([first.body.job]);
    // The second standby keeps beating (this runtime's heartbeat timeout is 600 ms); the first never does again.

    // 1 ms before afterMs: it stays, and the alarm comes back exactly at afterMs.
    await beat(spare, T0 + AFTER - 1);
    await at(T0 + AFTER - 1, "fo-app", all);
    await alarm("fo-app");
    let view = await show("fo-app");
    expect(view.failover[0]).toMatchObject({ current: home.deviceId, movedAt: null, nextCheckAt: new Date(T0 + AFTER).toISOString() });

    // At afterMs: re-placed on the first healthy standby of the list (the first one is silent too).
    await beat(spare, T0 + AFTER);
    await at(T0 + AFTER, "fo-app", all);
    await alarm("fo-app");
    view = await show("fo-app");
    const reason = `home ${home.deviceId} sent no heartbeat for ${AFTER} ms (failover after ${AFTER} ms)`;
    expect(view.failover[0]).toMatchObject({ home: home.deviceId, current: spare.deviceId, movedAt: new Date(T0 + AFTER).toISOString(), reason, history: [{ at: new Date(T0 + AFTER).toISOString(), from: home.deviceId, to: spare.deviceId, kind: "failover", reason }] });
    expect(view.modules[0].devices).toEqual([spare.deviceId]);
    // The standby was sent the module (its desired state), and new calls go there.
    const onSpare = await apply(spare);
    expect(onSpare.map((p) => [p.deployment, p.modules.map((m) => m.name)])).toEqual([["fo-app", ["math"]]]);
    expect((await apply(dead)).length).toBe(0);
    const second = await callAdd("fo-app", 2);
    expect(second.body.device).toBe(spare.deviceId);
    const spareJobs = (await poll(spare.credential)).body.jobs as { jobId: string; leaseToken: string }[];
    expect(spareJobs.map((j) => j.jobId)).toEqual([second.body.job]); // the call leased to the home is not here
    expect((await report(spare.credential, spareJobs[0]!.jobId, spareJobs[0]!.leaseToken, 3)).body.dispositions[0].disposition).toBe("accepted");

    // While the home is away, it stays on the standby and says why.
    await beat(spare, T0 + AFTER + 5_000);
    await at(T0 + AFTER + 5_000, "fo-app", all);
    await alarm("fo-app");
    expect((await show("fo-app")).failover[0]).toMatchObject({ current: spare.deviceId, note: `waiting for home ${home.deviceId}: offline (silent 20000 ms)` });

    // The home comes back: its leased call finishes there, its result accepted once.
    const back = T0 + 60_000;
    await beat(spare, back);
    await beat(home, back, [{ jobId: leased[0]!.jobId, leaseToken: leased[0]!.leaseToken }]);
    expect((await report(home.credential, leased[0]!.jobId, leased[0]!.leaseToken, 2)).body.dispositions[0].disposition).toBe("accepted");
    // A second report (a resend) is refused and changes nothing: the call has one result.
    expect((await report(home.credential, leased[0]!.jobId, leased[0]!.leaseToken, 99)).body.dispositions[0].disposition).not.toBe("accepted");
    const firstJob = (await call("GET", `/v1/jobs/${first.body.job}`)).body;
    expect(firstJob).toMatchObject({ state: "SUCCEEDED", device: home.deviceId, result: { value: 2 } });
    // Its part is still active there (it never left): the placement returns home and the standby's copy goes.
    await apply(home);
    await at(back, "fo-app", all);
    await alarm("fo-app");
    view = await show("fo-app");
    expect(view.failover[0]).toMatchObject({ current: home.deviceId, movedAt: new Date(back).toISOString() });
    expect(view.failover[0].history.map((h: { kind: string; from: string; to: string }) => [h.kind, h.from, h.to])).toEqual([["failover", home.deviceId, spare.deviceId], ["return", spare.deviceId, home.deviceId]]);
    expect(view.failover[0].reason).toMatch(new RegExp(`^home ${home.deviceId} is back: online, heard from 0 ms ago, its part active$`));
    expect(view.modules[0].devices).toEqual([home.deviceId]);
    expect((await apply(spare)).length).toBe(0);
    const third = await callAdd("fo-app", 3);
    expect(third.body.device).toBe(home.deviceId);
    // Each call ran on exactly one device.
    expect((await poll(home.credential)).body.jobs.map((j: { jobId: string }) => j.jobId)).toEqual([third.body.job]);
    expect((await poll(spare.credential)).body.jobs).toEqual([]);
  });

  it("waits, saying why, when no standby is healthy; refuses a standby that is not a registered device of the namespace (422) and a policy naming no standbys (400); undeploy removes the home's part too", async () => {
    const home = await registerDevice("fo2-home");
    const standby = await registerDevice("fo2-standby");
    await at(T0, "fo-wait", [home, standby]);
    await beat(home, T0);
    expect((await deploy("fo-bad", home, { afterMs: AFTER, devices: ["dzzzzzzzzzzzzzzzz"] })).status).toBe(422);
    expect((await deploy("fo-both", home, { afterMs: AFTER })).status).toBe(400);
    expect((await deploy("fo-wait", home, { afterMs: AFTER, devices: [standby.deviceId] })).status).toBe(201);
    await apply(home);
    await at(T0 + AFTER, "fo-wait", [home, standby]); // the standby never sent a heartbeat
    await alarm("fo-wait");
    let view = await show("fo-wait");
    expect(view.failover[0]).toMatchObject({ current: home.deviceId, movedAt: null, note: expect.stringMatching(new RegExp(`^home ${home.deviceId} sent no heartbeat for ${AFTER} ms, and no standby is healthy: ${standby.deviceId}: offline`)), nextCheckAt: new Date(T0 + AFTER + 5_000).toISOString() });
    // The standby comes up: the next look moves it there.
    await beat(standby, T0 + AFTER + 5_000);
    await at(T0 + AFTER + 5_000, "fo-wait", [home, standby]);
    await alarm("fo-wait");
    view = await show("fo-wait");
    expect(view.failover[0], JSON.stringify(view.failover[0])).toMatchObject({ current: standby.deviceId });
    await apply(standby);
    // Undeploy while failed over: both the standby's copy and the home's part go.
    const removed = await call("DELETE", "/v1/deployments/fo-wait");
    expect(removed.status).toBe(200);
    expect([...removed.body.devices].sort()).toEqual([home.deviceId, standby.deviceId].sort());
    expect((await apply(home)).length).toBe(0);
    expect((await apply(standby)).length).toBe(0);
  });

  it("with a selector, moves to the least-loaded healthy match (never the silent home)", async () => {
    const home = await registerDevice("fo3-home");
    const other = await registerDevice("fo3-unlabelled");
    const spare = await registerDevice("fo3-spare");
    for (const d of [home, spare]) expect((await call("PUT", `/v1/devices/${d.deviceId}/labels`, { json: { labels: { role: "fo3" } } })).status).toBe(200);
    const all = [home, other, spare];
    for (const d of all) await beat(d, T0);
    await at(T0, "fo-sel", all);
    expect((await deploy("fo-sel", home, { afterMs: AFTER, selector: { labels: { role: "fo3" } } })).status).toBe(201);
    await apply(home);
    for (const d of [other, spare]) await beat(d, T0 + AFTER);
    await at(T0 + AFTER, "fo-sel", all);
    await alarm("fo-sel");
    const view = await show("fo-sel");
    expect(view.failover[0], JSON.stringify(view.failover[0])).toMatchObject({ home: home.deviceId, current: spare.deviceId, policy: { selector: { labels: { role: "fo3" } } } });
    expect((await apply(spare)).map((p) => p.deployment)).toEqual(["fo-sel"]);
  });
});
