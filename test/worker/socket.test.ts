/** The push transport inside workerd: the agent's WebSocket to its device object. */
import { describe, expect, it } from "vitest";
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { call, connectAgent, health, registerDevice, result, sleep, submit, uploadModule } from "./helpers.js";

const connect = (credential: string, credit?: number) => connectAgent(credential, { timeoutMs: 5_000, credit });

describe("the agent's WebSocket", () => {
  it("needs the device's own credential and an upgrade", async () => {
    const { credential } = await registerDevice();
    const noUpgrade = await call("GET", "/v1/agent/ws", { token: credential });
    expect(noUpgrade.status).toBe(426);
    const other = await registerDevice("other");
    const forged = `wvd.${other.deviceId}.${credential.split(".")[2]}`;
    const res = await SELF.fetch("https://wasmvisor.test/v1/agent/ws", { headers: { upgrade: "websocket", authorization: `Bearer ${forged}` } });
    expect(res.status).toBe(401);
  });

  it("pushes jobs only against credit, and takes results as messages", async () => {
    const { deviceId, credential } = await registerDevice();
    const digest = await uploadModule("math");
    const agent = await connect(credential);
    const queued = (await submit(deviceId, digest, "add32", [1, 2])).body;
    expect(queued.state).toBe("QUEUED"); // no credit yet
    agent.send({ t: "credit", free: 2 });
    const first = await agent.next((m) => m.t === "jobs");
    expect(first.jobs.map((j: any) => j.jobId)).toEqual([queued.id]);
    const pushed = (await submit(deviceId, digest, "add32", [3, 4])).body;
    expect(pushed.state).toBe("LEASED"); // pushed at once: credit left, nothing queued ahead
    const second = await agent.next((m) => m.t === "jobs");
    const third = (await submit(deviceId, digest, "add32", [5, 6])).body;
    expect(third.state).toBe("QUEUED"); // credit used up

    const lease = first.jobs[0];
    // Started: the long lease (timeout + grace), so a slow machine does not let the short delivery lease run out first.
    agent.send({ t: "started", started: [{ jobId: lease.jobId, leaseToken: lease.leaseToken }], held: [] });
    agent.send({ t: "results", id: 7, free: 1, results: [{ jobId: lease.jobId, leaseToken: lease.leaseToken, outcome: "succeeded", result: result(3), error: null }] });
    const reported = await agent.next((m) => m.t === "reported");
    expect(reported).toEqual({ t: "reported", id: 7, dispositions: [{ jobId: lease.jobId, disposition: "accepted" }] });
    expect((await agent.next((m) => m.t === "jobs")).jobs[0].jobId).toBe(third.id); // credit 1 again
    expect((await call("GET", `/v1/jobs/${queued.id}`)).body).toMatchObject({ state: "SUCCEEDED", result: { value: 3 } });
    expect(second.jobs[0].jobId).toBe(pushed.id);
    agent.ws.close();
  });

  it("answers heartbeats, keepalives, and refuses malformed messages without closing", async () => {
    const { deviceId, credential } = await registerDevice();
    const agent = await connect(credential);
    agent.send({ t: "heartbeat", id: 1, health: health(), runningJobs: [] });
    expect(await agent.next((m) => m.t === "heartbeat-ack")).toEqual({ t: "heartbeat-ack", id: 1, cancel: [], deployments: 0, services: 0 });
    expect((await call("GET", `/v1/devices/${deviceId}`)).body).toMatchObject({ status: "online", health: { cpuPercent: 12.5 } });
    agent.send("ping");
    expect(await agent.next((m) => m === "pong")).toBe("pong");
    agent.send("{not json");
    expect((await agent.next((m) => m.t === "error")).message).toContain("message refused");
    agent.send({ t: "credit", free: -5 });
    await agent.next((m) => m.t === "error");
    agent.send({ t: "heartbeat", id: 2, health: health(), runningJobs: [] });
    expect((await agent.next((m) => m.t === "heartbeat-ack")).id).toBe(2);
    agent.ws.close();
  });

  it("tells the agent at once when one of its running jobs is canceled", async () => {
    const { deviceId, credential } = await registerDevice();
    const digest = await uploadModule("math");
    const agent = await connect(credential);
    agent.send({ t: "credit", free: 1 });
    const job = (await submit(deviceId, digest, "add32", [1, 1])).body;
    await agent.next((m) => m.t === "jobs");
    await call("POST", `/v1/jobs/${job.id}/cancel`);
    expect(await agent.next((m) => m.t === "cancel")).toEqual({ t: "cancel", jobIds: [job.id], cmd: { id: expect.any(String), expiresAt: expect.any(Number) } });
    agent.ws.close();
  });

  it("pushes a job to the newest open connection, not to one that is going away", async () => {
    const { deviceId, credential } = await registerDevice();
    const digest = await uploadModule("math");
    // A half-dead link: the server holds the socket, but its peer never reads, so the close
    // the server sends on reconnect is never answered and the socket lingers as closing.
    const halfDead = await SELF.fetch("https://wasmvisor.test/v1/agent/ws", { headers: { upgrade: "websocket", authorization: `Bearer ${credential}` } });
    expect(halfDead.status).toBe(101);
    const fresh = await connect(credential, 4); // the credit arrived before the submit

    const pushed = (await submit(deviceId, digest, "add32", [1, 2])).body;
    expect(pushed.state).toBe("LEASED");
    const delivered = await fresh.next((m) => m.t === "jobs");
    expect(delivered.jobs.map((j: any) => j.jobId)).toEqual([pushed.id]);
    fresh.ws.close();
  });

  it("never pushes a job whose row was not stored", async () => {
    const { deviceId, credential } = await registerDevice();
    const digest = await uploadModule("math");
    const agent = await connect(credential, 4);
    const first = (await submit(deviceId, digest, "add32", [1, 1])).body;
    expect((await agent.next((m) => m.t === "jobs")).jobs[0].jobId).toBe(first.id);

    // The object's storage refuses the next job's INSERT (a fault injected into its own SQLite), while the socket still has credit.
    const device = env.DEVICES.get(env.DEVICES.idFromName(deviceId));
    await runInDurableObject(device, (_obj, state) => {
      state.storage.sql.exec("CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'storage refused the row'); END");
    });
    const spec = { device: deviceId, module: digest, function: "add32", args: [9, 9], timeoutMs: 1000, maxAttempts: 3, priority: 0, start: true };
    const refused = await device.submit(null, spec).then(() => null, (e: unknown) => e);
    expect(String(refused)).toContain("storage refused the row");
    await runInDurableObject(device, (_obj, state) => void state.storage.sql.exec("DROP TRIGGER refuse_jobs"));
    // Messages on one socket arrive in order: the heartbeat's answer comes after any push of that submit.
    agent.send({ t: "heartbeat", id: 2, health: health(), runningJobs: [] });
    await agent.next((m) => m.t === "heartbeat-ack");
    expect(agent.inbox.filter((m) => m.t === "jobs")).toEqual([]);
    agent.ws.close();
  });

  it("replaces an older connection of the same device, and delivers on the new one", async () => {
    const { deviceId, credential } = await registerDevice();
    const digest = await uploadModule("math");
    const a = await connect(credential);
    a.send({ t: "credit", free: 4 });
    const b = await connect(credential);
    b.send({ t: "credit", free: 4 });
    for (let i = 0; i < 40 && !a.closed(); i++) await sleep(25);
    expect(a.closed()?.code).toBe(4000);
    const job = (await submit(deviceId, digest, "add32", [2, 2])).body;
    expect((await b.next((m) => m.t === "jobs")).jobs[0].jobId).toBe(job.id);
    expect(a.inbox.filter((m) => m.t === "jobs")).toEqual([]);
    b.ws.close();
  });
});
