/**
 * Bounded commands at the device object: each command sent to the agent (a job push, a cancel, jobs
 * handed to a poll) carries an id and an expiry; the agent's answers (acked, nacked with a reason,
 * expired) are recorded, one never answered is `unanswered` once it expires (the alarm, on the object's
 * injected clock), and GET /v1/devices/{id}/commands shows each.
 */
import { describe, expect, it } from "vitest";
import { env, runDurableObjectAlarm, runInDurableObject, SELF } from "cloudflare:test";
import { call, registerDevice, submit, uploadModule } from "./helpers.js";
import type { DeviceObject } from "../../src/durable/device-object.js";
import { until } from "../helpers/until.js";

const EPOCH = "x-wasmvisor-epoch";
const T0 = Date.parse("2026-11-27T12:00:00Z");
const TTL = 30_000; // COMMAND_TTL_MS's default
const stub = (deviceId: string) => env.DEVICES.get(env.DEVICES.idFromName(deviceId));
const setClock = (deviceId: string, ms: number) => runInDurableObject(stub(deviceId), (obj: DeviceObject) => obj.clock.set(ms));

/**
 * A device whose object's clock reads T0, and its agent: a session opened (its epoch), then the
 * agent's socket in that session, granting `credit`. `inbox` keeps every message the socket receives.
 */
async function agentInSession(credit: number) {
  const dev = await registerDevice();
  const digest = await uploadModule("math");
  await setClock(dev.deviceId, T0);
  const { epoch } = (await call("POST", "/v1/agent/session", { token: dev.credential })).body as { epoch: number };
  const res = await SELF.fetch("https://wasmvisor.test/v1/agent/ws", { headers: { upgrade: "websocket", authorization: `Bearer ${dev.credential}`, [EPOCH]: String(epoch) } });
  const ws = res.webSocket!;
  ws.accept();
  const inbox: any[] = [];
  ws.addEventListener("message", (e) => inbox.push(JSON.parse(e.data as string)));
  ws.send(JSON.stringify({ t: "credit", free: credit }));
  return { dev, digest, epoch, ws, inbox };
}

describe("bounded commands", () => {
  it("gives every command an id and an expiry, and records acked, nacked, expired and unanswered", async () => {
    const { dev, digest, epoch, ws, inbox } = await agentInSession(2);

    // A job push is a command.
    const first = (await submit(dev.deviceId, digest, "add32", [1, 1], { timeoutMs: 600_000 })).body;
    const push1 = await until("the first push", () => inbox.find((m) => m.t === "jobs" && m.jobs[0].jobId === first.id));
    expect(push1.cmd).toEqual({ id: expect.any(String), expiresAt: T0 + TTL });
    // So is a cancel of a job the agent runs.
    expect((await call("POST", `/v1/jobs/${first.id}/cancel`)).status).toBe(200);
    const cancel = await until("the cancel", () => inbox.find((m) => m.t === "cancel"));
    expect(cancel).toMatchObject({ jobIds: [first.id], cmd: { id: expect.any(String), expiresAt: T0 + TTL } });
    expect(cancel.cmd.id).not.toBe(push1.cmd.id);
    // A push the agent never answers.
    const second = (await submit(dev.deviceId, digest, "add32", [2, 2], { timeoutMs: 600_000 })).body;
    const push2 = await until("the second push", () => inbox.find((m) => m.t === "jobs" && m.jobs[0].jobId === second.id));

    ws.send(JSON.stringify({ t: "command-acks", acks: [{ id: push1.cmd.id, outcome: "acked" }, { id: cancel.cmd.id, outcome: "nacked", reason: "not running here" }] }));
    ws.close();

    // Over HTTP: jobs handed to a poll are a command too; the agent found it expired on arrival.
    const third = (await submit(dev.deviceId, digest, "add32", [3, 3], { timeoutMs: 600_000 })).body;
    const delivery = (await call("GET", "/v1/agent/jobs?wait=0&max=4", { token: dev.credential, headersExtra: { [EPOCH]: String(epoch) } })).body;
    expect(delivery.jobs.map((j: { jobId: string }) => j.jobId)).toContain(third.id);
    expect(delivery.cmd).toMatchObject({ expiresAt: T0 + TTL });
    const answered = await call("POST", "/v1/agent/commands/acks", { token: dev.credential, headersExtra: { [EPOCH]: String(epoch) }, json: { acks: [{ id: delivery.cmd.id, outcome: "expired", reason: "arrived 5 ms after its expiry; discarded" }] } });
    expect(answered.body).toEqual({ recorded: 1 });

    // Past the expiry, what got no answer is unanswered (the alarm); answers after that still count.
    const before = (await call("GET", `/v1/devices/${dev.deviceId}/commands`)).body.commands as { id: string; state: string }[];
    expect(before.find((c) => c.id === push2.cmd.id)?.state).toBe("sent");
    await setClock(dev.deviceId, T0 + TTL + 1);
    await runDurableObjectAlarm(stub(dev.deviceId));
    const list = (await call("GET", `/v1/devices/${dev.deviceId}/commands`)).body.commands as { id: string; kind: string; subject: string; state: string; reason: string | null; expiresAt: string }[];
    const byId = new Map(list.map((c) => [c.id, c]));
    expect(byId.get(push1.cmd.id)).toMatchObject({ kind: "jobs", subject: first.id, state: "acked", reason: null, expiresAt: new Date(T0 + TTL).toISOString() });
    expect(byId.get(cancel.cmd.id)).toMatchObject({ kind: "cancel", subject: first.id, state: "nacked", reason: "not running here" });
    expect(byId.get(push2.cmd.id)).toMatchObject({ kind: "jobs", subject: second.id, state: "unanswered" });
    expect(byId.get(delivery.cmd.id)).toMatchObject({ kind: "jobs", state: "expired", reason: "arrived 5 ms after its expiry; discarded" });
    // An answer to a decided command changes nothing.
    const again = await call("POST", "/v1/agent/commands/acks", { token: dev.credential, headersExtra: { [EPOCH]: String(epoch) }, json: { acks: [{ id: push1.cmd.id, outcome: "nacked", reason: "changed my mind" }] } });
    expect(again.body).toEqual({ recorded: 0 });
  });

  it("confirms answers sent over the socket once stored; an answer resent after a lost confirmation changes nothing", async () => {
    const { dev, digest, ws, inbox } = await agentInSession(1);
    const job = (await submit(dev.deviceId, digest, "add32", [1, 1], { timeoutMs: 600_000 })).body;
    const push = await until("the push", () => inbox.find((m) => m.t === "jobs" && m.jobs[0].jobId === job.id));

    ws.send(JSON.stringify({ t: "command-acks", id: 7, acks: [{ id: push.cmd.id, outcome: "acked" }] }));
    expect(await until("the confirmation", () => inbox.find((m) => m.t === "command-acks-recorded" && m.id === 7))).toEqual({ t: "command-acks-recorded", id: 7, recorded: 1 });
    const first = ((await call("GET", `/v1/devices/${dev.deviceId}/commands`)).body.commands as { id: string }[]).find((c) => c.id === push.cmd.id);
    expect(first).toMatchObject({ state: "acked", answeredAt: new Date(T0).toISOString() });

    // The confirmation was lost on the way: the agent sends the same answer again, later. Confirmed, and nothing changes.
    await setClock(dev.deviceId, T0 + 5_000);
    ws.send(JSON.stringify({ t: "command-acks", id: 8, acks: [{ id: push.cmd.id, outcome: "acked" }] }));
    expect(await until("the second confirmation", () => inbox.find((m) => m.t === "command-acks-recorded" && m.id === 8))).toEqual({ t: "command-acks-recorded", id: 8, recorded: 0 });
    const second = ((await call("GET", `/v1/devices/${dev.deviceId}/commands`)).body.commands as { id: string }[]).find((c) => c.id === push.cmd.id);
    expect(second).toEqual(first);
    // An answer without an id (an agent that does not resend) is recorded and not confirmed.
    ws.send(JSON.stringify({ t: "command-acks", acks: [{ id: push.cmd.id, outcome: "nacked", reason: "late" }] }));
    ws.send(JSON.stringify({ t: "command-acks", id: 9, acks: [{ id: "cunknown", outcome: "acked" }] }));
    await until("the third confirmation", () => inbox.find((m) => m.t === "command-acks-recorded" && m.id === 9));
    expect(inbox.filter((m) => m.t === "command-acks-recorded").map((m) => m.id)).toEqual([7, 8, 9]);
    ws.close();
  });

  it("refuses answers of a session taken over (409), and hides a device's commands from other tenants and the agent itself", async () => {
    const dev = await registerDevice();
    const { epoch } = (await call("POST", "/v1/agent/session", { token: dev.credential })).body as { epoch: number };
    await call("POST", "/v1/agent/session", { token: dev.credential });
    const stale = await call("POST", "/v1/agent/commands/acks", { token: dev.credential, headersExtra: { [EPOCH]: String(epoch) }, json: { acks: [{ id: "c1", outcome: "acked" }] } });
    expect(stale.status).toBe(409);
    expect((await call("GET", `/v1/devices/${dev.deviceId}/commands`, { token: dev.credential })).status).toBe(403);
    expect((await call("GET", `/v1/devices/dzzzzzzzzzzzzzzzz/commands`)).status).toBe(404);
  });
});
