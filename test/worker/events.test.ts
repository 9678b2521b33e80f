/**
 * GET /v1/events against the real Worker and objects: device objects' triggers fill their
 * outboxes, relays forward, the namespace's hub numbers and streams. Events arrive live,
 * filters hold, Last-Event-ID replays exactly the missed ones, tenants never see each other.
 */
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { call, conformance, poll, registerDevice, report, submit, uploadModule, ADMIN } from "./helpers.js";
import { createParser } from "eventsource-parser";

type Ev = { id: string; kind: string; device: string | null; job: string | null; deployment: string | null; namespace: string; data: Record<string, unknown> };

/** A replay (?wait=0): the stream's events up to now (after Last-Event-ID 0: the whole window), through call() so the answer is checked against /openapi.json. */
async function replay(query: string, opts: { token?: string; lastEventId?: string } = {}) {
  const res = await call("GET", `/v1/events?wait=0&${query}`, { token: opts.token, headersExtra: { "last-event-id": opts.lastEventId ?? "0" } });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.type).toBe("text/event-stream");
  return parse(res.body as string);
}

function parse(text: string): { events: Ev[]; gaps: unknown[] } {
  const events: Ev[] = [];
  const gaps: unknown[] = [];
  const parser = createParser({ onEvent: (m) => (m.event === "gap" ? gaps.push(JSON.parse(m.data)) : events.push({ ...(JSON.parse(m.data) as Ev), id: m.id! })) });
  parser.feed(text);
  return { events, gaps };
}

/** Replays until `until` holds (events travel device -> relay -> hub in coalesced batches). */
async function replayUntil(query: string, until: (e: Ev[]) => boolean, opts: { token?: string; lastEventId?: string } = {}) {
  let last: Ev[] = [];
  for (let i = 0; i < 200; i++) {
    last = (await replay(query, opts)).events;
    if (until(last)) return last;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`events never matched for ${query}: ${last.map((e) => e.kind).join(", ")}`);
}

/** Runs one job through its life: queued, leased, succeeded. */
async function runJob(deviceId: string, credential: string, digest: string) {
  const job = (await submit(deviceId, digest, "add32", [2, 3])).body;
  const lease = (await poll(credential)).body.jobs[0];
  expect((await call("POST", "/v1/agent/acks", { token: credential, json: { started: [{ jobId: lease.jobId, leaseToken: lease.leaseToken }] } })).status).toBe(200);
  expect((await report(credential, lease.jobId, lease.leaseToken, 5)).status).toBe(200);
  return job.id as string;
}

describe("the event stream", () => {
  it("records a device coming online and a job's states, filtered by device, job and kind", async () => {
    const { deviceId, credential } = await registerDevice("events-a");
    const other = await registerDevice("events-b");
    const digest = await uploadModule("math");
    await poll(credential); // the agent is heard from: online
    const jobId = await runJob(deviceId, credential, digest);
    await runJob(other.deviceId, other.credential, digest);

    const mine = await replayUntil(`device=${deviceId}`, (e) => e.some((x) => x.kind === "job.succeeded"));
    expect(mine.every((e) => e.device === deviceId)).toBe(true);
    const kinds = mine.map((e) => e.kind);
    expect(kinds.slice(0, 2)).toEqual(["device.registered", "device.online"]);
    expect(kinds.filter((k) => k.startsWith("job."))).toEqual(["job.queued", "job.leased", "job.running", "job.succeeded"]);
    expect(mine.find((e) => e.kind === "job.succeeded")).toMatchObject({ job: jobId, namespace: "default", data: { state: "SUCCEEDED", from: "RUNNING", function: "add32" } });
    // ids are monotonic in the stream
    const ids = mine.map((e) => Number(e.id));
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);

    const byJob = (await replay(`job=${jobId}`)).events;
    expect(byJob.map((e) => e.kind)).toEqual(["job.queued", "job.leased", "job.running", "job.succeeded"]);
    const ended = await replayUntil(`kind=job.succeeded,device.*&device=${other.deviceId}`, (e) => e.some((x) => x.kind === "job.succeeded"));
    expect(ended.map((e) => e.kind)).toEqual(["device.registered", "device.online", "job.succeeded"]);
  });

  it("streams live, and a client resuming with Last-Event-ID gets exactly the events it missed", async () => {
    const { deviceId, credential } = await registerDevice("events-live");
    const digest = await uploadModule("math");
    await replayUntil(`device=${deviceId}`, (e) => e.some((x) => x.kind === "device.registered"));

    const res = await SELF.fetch(`https://wasmvisor.test/v1/events?device=${deviceId}`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    (await conformance()).check("GET", "/v1/events", res.status, res.headers.get("content-type"), "");
    const live: Ev[] = [];
    const parser = createParser({ onEvent: (m) => live.push({ ...(JSON.parse(m.data) as Ev), id: m.id! }) });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const readUntil = async (until: () => boolean) => {
      while (!until()) {
        const { done, value } = await reader.read();
        if (done) throw new Error("the stream ended");
        parser.feed(value);
      }
    };
    await poll(credential);
    await readUntil(() => live.some((e) => e.kind === "device.online"));
    const seen = live[live.length - 1]!.id;
    await reader.cancel(); // the client drops off ...

    const jobId = await runJob(deviceId, credential, digest); // ... while the job runs
    const all = await replayUntil(`device=${deviceId}`, (e) => e.some((x) => x.kind === "job.succeeded"));
    const missed = all.filter((e) => Number(e.id) > Number(seen));
    expect(missed.map((e) => e.kind)).toEqual(["job.queued", "job.leased", "job.running", "job.succeeded"]);

    const resumed = (await replay(`device=${deviceId}`, { lastEventId: seen })).events;
    expect(resumed).toEqual(missed);
    expect(resumed.every((e) => e.job === jobId)).toBe(true);
    // the query parameter works the same (EventSource in a browser cannot set headers)
    const byQuery = await call("GET", `/v1/events?wait=0&device=${deviceId}&lastEventId=${seen}`);
    expect(parse(byQuery.body as string).events).toEqual(missed);
    // tail: the newest N without Last-Event-ID
    const tail = await call("GET", `/v1/events?wait=0&device=${deviceId}&tail=2`);
    expect(parse(tail.body as string).events.map((e) => e.kind)).toEqual(["job.running", "job.succeeded"]);
    // without either, only what happens from now on
    expect(parse((await call("GET", `/v1/events?wait=0&device=${deviceId}`)).body as string).events).toEqual([]);
  });

  it("keeps namespaces apart and checks its input", async () => {
    const ns = `ev-${crypto.randomUUID().slice(0, 8)}`;
    const reg = (await call("POST", "/v1/keys", { json: { role: "register", namespace: ns } })).body.key;
    const user = (await call("POST", "/v1/keys", { json: { role: "user", namespace: ns } })).body.key;
    const dev = await call("POST", "/v1/devices/register", { token: reg, json: { name: "tenant", description: { platform: { memory: { bytes: 1 }, cpu: { humanReadableName: "x", clockSpeed: { Hz: 1 } } }, supervisorInterfaces: [] } } });
    expect(dev.status).toBe(201);
    const theirs = await replayUntil("", (e) => e.some((x) => x.device === dev.body.deviceId), { token: user });
    expect(theirs.every((e) => e.namespace === ns)).toBe(true);
    // the default namespace's stream never shows it
    expect((await replay(`device=${dev.body.deviceId}`)).events).toEqual([]);
    // a scoped key cannot ask for another namespace; a global one can
    expect((await call("GET", "/v1/events?wait=0&namespace=default", { token: user })).status).toBe(403);
    expect((await replay(`namespace=${ns}&device=${dev.body.deviceId}`)).events.map((e) => e.kind)).toEqual(["device.registered"]);
    expect((await call("GET", "/v1/events?wait=0&kind=Job!", {})).status).toBe(400);
    expect((await call("GET", "/v1/events?wait=0", { headersExtra: { "last-event-id": "abc" } })).status).toBe(400);
  });
});
