/**
 * A job's failover move with real agents: the device it leaves and another one fall silent (their agents
 * are killed). With a heartbeat timeout longer than the policy's afterMs, the other silent device still
 * reads online when the policy fires; the move must pass it over for a device heard from within afterMs.
 * (Found by bench/failover-fleet.mjs: 5 of 5 jobs moved onto devices that had fallen silent with theirs.)
 */
import { describe, expect, it } from "vitest";
import { startControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { compileWat, WAT } from "../helpers/wat.js";
import { until } from "../helpers/until.js";
import type { JobView } from "../../src/sdk/index.js";
import { cleanupAfterEach } from "../helpers/cleanup.js";

const cleanup = cleanupAfterEach();

describe("a job's failover move", () => {
  it("goes to a device heard from within afterMs, not to one that fell silent too", async () => {
    const cp = await startControlPlane({ vars: { HEARTBEAT_TIMEOUT_MS: "60000" } });
    cleanup.push(() => cp.stop());
    const agents: AgentProcess[] = [];
    for (let i = 0; i < 3; i++) {
      const a = await startAgent({ server: cp.url, token: (await cp.admin.createKey("register")).key });
      cleanup.push(() => a.kill("SIGKILL"));
      agents.push(a);
      expect((await cp.admin.request("PUT", `/v1/devices/${a.deviceId}/labels`, { labels: { pool: "jf" } })).status).toBe(200);
    }
    const hello = (await cp.admin.uploadModule(await compileWat(WAT.hello))).digest;
    const afterMs = 3_000;
    const sub = await cp.admin.request<JobView>("POST", "/v1/jobs", { selector: { labels: { pool: "jf" } }, module: hello, function: "greet", args: [], start: false, failover: { onOffline: "move", afterMs } });
    expect(sub.status).toBe(202);
    const holder = agents.find((a) => a.deviceId === sub.body.device)!;
    // Of the other two, the one placement would pick on a tie (the smaller id) falls silent first, then the holder.
    const [quiet, fresh] = agents.filter((a) => a !== holder).sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1)) as [AgentProcess, AgentProcess];
    await quiet.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 1_500)); // so the quiet one has been silent well past afterMs when the holder's policy fires
    await holder.kill("SIGKILL");
    const moved = await until("the job's move", async () => {
      const v = (await cp.admin.request<JobView>("GET", `/v1/jobs/${sub.body.id}`)).body;
      return v.failover?.movedTo ? v : undefined;
    });
    expect(moved.state).toBe("EXPIRED");
    expect(moved.failover!.movedTo!.startsWith(`${fresh.deviceId}-`), JSON.stringify(moved.failover)).toBe(true);
  }, 180_000);
});
