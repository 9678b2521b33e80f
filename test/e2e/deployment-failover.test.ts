/**
 * A deployment with a failover list, with real agents: the home agent is killed -> once it has been
 * silent for afterMs the module is re-placed on the standby (which applies it) and calls run there ->
 * the home agent is restarted on its data dir -> the placement returns home and calls run there again.
 * Each call runs on exactly one device (the agents' own logs say which).
 */
import { afterEach, describe, expect, it } from "vitest";
import { startControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { compileWat, WAT } from "../helpers/wat.js";
import { until } from "../helpers/until.js";
import type { DeploymentView } from "../../src/sdk/index.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

type Failover = NonNullable<DeploymentView["failover"]>[number];

describe("a deployment with a failover list", () => {
  it("moves to the standby when the home agent dies and returns when it is back", async () => {
    const cp = await startControlPlane();
    cleanup.push(() => cp.stop());
    const register = async () => (await cp.admin.createKey("register")).key;
    let home = await startAgent({ server: cp.url, token: await register() });
    cleanup.push(() => home.kill("SIGKILL"));
    const standby = await startAgent({ server: cp.url, token: await register() });
    cleanup.push(() => standby.kill("SIGKILL"));
    const digest = (await cp.admin.uploadModule(await compileWat(WAT.math))).digest;
    const { generateSigningKey, signDeployment } = await import("../../src/sdk/index.js");
    const { privateJwk, publicJwk } = await generateSigningKey("ES256");
    await cp.admin.trustOrchestratorKey(publicJwk, "failover e2e");
    const afterMs = 4_000;
    const functions = { add32: { params: [{ name: "a", type: "integer" as const }, { name: "b", type: "integer" as const }], result: "integer" as const } };
    await cp.admin.deploy(await signDeployment(privateJwk, { id: "fo-e2e", modules: [{ name: "m", digest, devices: [home.deviceId], functions, failover: { onOffline: "move", afterMs, devices: [standby.deviceId] } }] }));
    expect((await cp.admin.waitForDeployment("fo-e2e")).state).toBe("active");

    const add = async (a: number) => {
      const out = await cp.admin.runFunction("fo-e2e", "m", "add32", { a, b: 1 }, 30);
      expect(out.job).toMatchObject({ state: "SUCCEEDED", result: { value: a + 1 } });
      return out.job;
    };
    const ranOn = (agent: AgentProcess, jobId: string) => agent.logs.some((l) => l.msg === "job finished" && l.jobId === jobId);
    const failoverOf = async () => (await cp.admin.getDeployment("fo-e2e")).failover![0]!;
    const placed = (what: string, pred: (f: Failover) => boolean) => until(what, async () => { const f = await failoverOf(); return pred(f) && f; });

    const before = await add(1);
    expect(before.device).toBe(home.deviceId);

    // The home agent dies.
    await home.kill("SIGKILL");
    const moved = await placed("failover to the standby", (f) => f.current === standby.deviceId);
    const lastSeen = Date.parse((await cp.admin.getDevice(home.deviceId)).lastSeenAt!);
    expect(moved.history.at(-1)).toMatchObject({ kind: "failover", from: home.deviceId, to: standby.deviceId });
    expect(moved.reason).toMatch(new RegExp(`^home ${home.deviceId} sent no heartbeat for \\d+ ms \\(failover after ${afterMs} ms\\)$`));
    console.log(`[deployment failover] home's last heartbeat -> placement moved ${Date.parse(moved.movedAt!) - lastSeen} ms (afterMs ${afterMs})`);
    expect((await cp.admin.waitForDeployment("fo-e2e")).state).toBe("active"); // the standby applied it
    const during = await add(2);
    expect(during.device).toBe(standby.deviceId);
    expect(ranOn(standby, during.id)).toBe(true);

    // The home agent comes back on its data dir: the placement returns, and calls run there again.
    home = await startAgent({ server: cp.url, dataDir: home.dataDir });
    cleanup.push(() => home.kill("SIGKILL"));
    const returned = await placed("return home", (f) => f.current === home.deviceId);
    expect(returned.history.map((h) => h.kind)).toEqual(["failover", "return"]);
    const after = await add(3);
    expect(after.device).toBe(home.deviceId);
    expect(ranOn(home, after.id)).toBe(true);
    // Every call ran once, on one device.
    for (const [job, agent, other] of [[during, standby, home], [after, home, standby]] as const) {
      expect(ranOn(agent, job.id)).toBe(true);
      expect(ranOn(other, job.id)).toBe(false);
    }
    // The standby's copy went: its agent removed the deployment.
    await standby.waitForLog((l) => l.msg === "deployment removed" && l.deployment === "fo-e2e", 30_000);
  }, 240_000);
});
