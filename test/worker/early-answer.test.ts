/**
 * Answer before the commit, acknowledge after it (issue 14, lever 1; docs/design.md): a waiting
 * caller gets a result before its row is written, the agent is told "reported" only once the write
 * is durable, and an object restart at any point between loses nothing and never changes a result
 * a caller has seen. The points are held open through the session's own seams (`afterAnswers`:
 * between the answer and the write; `durable`: between the write and the acknowledgement), and
 * the object is restarted there with `abortAllDurableObjects` (its in-memory state is gone, what
 * committed stays).
 */
import { describe, expect, it } from "vitest";
import { SELF, abortAllDurableObjects, env, runInDurableObject } from "cloudflare:test";
import { ADMIN, call, connectAgent, registerDevice, result, sleep, uploadModule } from "./helpers.js";
import type { DeviceObject } from "../../src/durable/device-object.js";

/** The agent's socket, with credit 1 that has arrived (a heartbeat's answer says so). */
const connect = (credential: string) => connectAgent(credential, { credit: 1 });

/** The session's seams, reached inside the object (tests only). */
type SessionSeams = { afterAnswers: () => Promise<void>; durable: () => Promise<void> };
const seams = (obj: DeviceObject) => (obj as unknown as { p: { session: { p: SessionSeams } } }).p.session.p;

async function setUp() {
  const { deviceId, credential } = await registerDevice();
  const digest = await uploadModule("math");
  const device = env.DEVICES.get(env.DEVICES.idFromName(deviceId));
  const agent = await connect(credential);
  return { deviceId, credential, digest, device, agent };
}

/** Submits and waits (POST /v1/jobs?wait); the agent gets the push, starts the job and reports `value`. */
async function runWaited(s: Awaited<ReturnType<typeof setUp>>, value: number, beforeResult: () => Promise<void> = async () => {}) {
  const answer = SELF.fetch("https://wasmvisor.test/v1/jobs?wait=20", {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: JSON.stringify({ device: s.deviceId, module: s.digest, function: "add32", args: [value - 1, 1] }),
  });
  const { jobs } = await s.agent.next((m) => m.t === "jobs");
  const lease = { jobId: jobs[0].jobId as string, leaseToken: jobs[0].leaseToken as string };
  s.agent.send({ t: "started", id: 5, started: [lease], held: [] });
  await s.agent.next((m) => m.t === "acked"); // the start is durable before the result comes
  await beforeResult();
  const report = { t: "results", id: 9, free: 1, results: [{ ...lease, outcome: "succeeded", result: result(value), error: null, logs: [] }] };
  s.agent.send(report);
  return { answer, lease, report };
}

describe("answer before the commit, acknowledge after it", () => {
  it("answers the waiting caller before the result's row is written; a restart then loses nothing and the resend keeps what the caller saw", async () => {
    const s = await setUp();
    // Between the answer and the write: the object never gets past this point (it is restarted there).
    await runInDurableObject(s.device, (obj: DeviceObject) => void (seams(obj).afterAnswers = () => new Promise<void>(() => {})));
    const { answer, lease, report } = await runWaited(s, 42);
    const res = await answer;
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { state: string; result: { value: number }; finishedAt: string };
    expect(seen).toMatchObject({ state: "SUCCEEDED", result: { value: 42 } });
    expect(s.agent.inbox.filter((m) => m.t === "reported")).toEqual([]); // not acknowledged: nothing was written

    await abortAllDurableObjects();
    // The restarted object has the job as it was committed: running, no result (the answer left before any write).
    const before = (await call("GET", `/v1/jobs/${lease.jobId}`)).body;
    expect(before).toMatchObject({ state: "RUNNING", result: null });

    // The agent reconnects (same session) and sends its outbox again: the same result under the same lease.
    const again = await connect(s.credential);
    again.send(report);
    expect(await again.next((m) => m.t === "reported")).toEqual({ t: "reported", id: 9, dispositions: [{ jobId: lease.jobId, disposition: "accepted" }] });
    const after = (await call("GET", `/v1/jobs/${lease.jobId}`)).body;
    expect(after).toMatchObject({ state: "SUCCEEDED", result: { value: 42 } });

    // Another result for the same lease now is refused as a duplicate: what the caller saw stands.
    again.send({ ...report, id: 10, results: [{ ...report.results[0], result: result(7) }] });
    expect((await again.next((m) => m.t === "reported")).dispositions).toEqual([{ jobId: lease.jobId, disposition: "duplicate" }]);
    expect((await call("GET", `/v1/jobs/${lease.jobId}`)).body).toMatchObject({ state: "SUCCEEDED", result: { value: 42 } });
    again.ws.close();
  });

  it("acknowledges the agent only after the write is durable; a restart before the acknowledgement keeps the result and the resend is a duplicate", async () => {
    const s = await setUp();
    // Between the write and the acknowledgement: the durable promise never resolves here.
    const holdDurable = () => runInDurableObject(s.device, (obj: DeviceObject) => void (seams(obj).durable = () => new Promise<void>(() => {})));
    const { answer, lease, report } = await runWaited(s, 43, holdDurable);
    expect(await (await answer).json()).toMatchObject({ state: "SUCCEEDED", result: { value: 43 } });
    await sleep(100);
    expect(s.agent.inbox.filter((m) => m.t === "reported")).toEqual([]); // not yet durable as far as the object knows: no acknowledgement

    await abortAllDurableObjects();
    expect((await call("GET", `/v1/jobs/${lease.jobId}`)).body).toMatchObject({ state: "SUCCEEDED", result: { value: 43 } });
    const again = await connect(s.credential);
    again.send(report);
    expect(await again.next((m) => m.t === "reported")).toEqual({ t: "reported", id: 9, dispositions: [{ jobId: lease.jobId, disposition: "duplicate" }] });
    expect((await call("GET", `/v1/jobs/${lease.jobId}`)).body).toMatchObject({ state: "SUCCEEDED", result: { value: 43 } });
    again.ws.close();
  });

  it("lets nothing change the job between the answer and the write (a cancel in that window writes it first and finds it ended)", async () => {
    const s = await setUp();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await runInDurableObject(s.device, (obj: DeviceObject) => void (seams(obj).afterAnswers = () => held));
    const { answer, lease } = await runWaited(s, 44);
    expect(await (await answer).json()).toMatchObject({ state: "SUCCEEDED", result: { value: 44 } });
    // A cancel in the window writes the answered result first, and finds the job ended.
    expect((await call("POST", `/v1/jobs/${lease.jobId}/cancel`)).status).toBe(409);
    release();
    expect(await s.agent.next((m) => m.t === "reported")).toEqual({ t: "reported", id: 9, dispositions: [{ jobId: lease.jobId, disposition: "accepted" }] });
    expect((await call("GET", `/v1/jobs/${lease.jobId}`)).body).toMatchObject({ state: "SUCCEEDED", result: { value: 44 } });
    s.agent.ws.close();
  });

  it("stores exactly what the waiting caller was answered (the row read back equals the answer)", async () => {
    const s = await setUp();
    const { answer, lease } = await runWaited(s, 45);
    const seen = await (await answer).json();
    await s.agent.next((m) => m.t === "reported");
    const stored = (await call("GET", `/v1/jobs/${lease.jobId}`)).body;
    expect(stored).toEqual(seen);
    s.agent.ws.close();
  });
});
