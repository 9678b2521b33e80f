/**
 * Event streams end with their credential and never lose events silently: a revoked key's
 * open stream ends (STREAM_RECHECK_MS is 200 ms in TEST_VARS), a session's stream ends at
 * the cookie's expiry, a replay of 5,000 events arrives whole however far ahead it runs,
 * and one credential holds at most MAX_STREAMS_PER_KEY open streams (429 past that).
 */
import { SELF, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { createParser } from "eventsource-parser";
import { call, registerDevice, uploadModule, ADMIN } from "./helpers.js";
import { eventHubStub } from "../../src/platform/stubs.js";
import { issueSession, SESSION_TTL_SECONDS, SESSION_COOKIE } from "../../src/worker/session.js";
import { MAX_STREAMS_PER_KEY } from "../../src/durable/events-object.js";
import type { OutboxEvent } from "../../src/durable/event-outbox.js";

const open = (query: string, headers: Record<string, string>) => SELF.fetch(`https://wasmvisor.test/v1/events?${query}`, { headers });

/** Reads the stream to its end (a test timeout fails one that never ends); returns its text. */
async function readToEnd(res: Response): Promise<string> {
  return await res.text();
}

async function seed(namespace: string, n: number) {
  const events: OutboxEvent[] = Array.from({ length: n }, (_, i) => ({ kind: "test.seeded", device: null, job: null, deployment: null, data: JSON.stringify({ i }), at: Date.now() }));
  for (let i = 0; i < n; i += 1000) await eventHubStub(env, namespace).append(namespace, events.slice(i, i + 1000));
}

describe("event streams and their credentials", () => {
  it("an open stream ends once its API key is revoked, with a comment saying why", async () => {
    const key = (await call("POST", "/v1/keys", { json: { role: "user", namespace: "revoked-ns" } })).body;
    const res = await open("", { authorization: `Bearer ${key.key}` });
    expect(res.status).toBe(200);
    expect((await call("DELETE", `/v1/keys/${key.id}`)).status).toBe(200);
    expect((await call("GET", "/v1/events?wait=0", { token: key.key })).status).toBe(401);
    const text = await readToEnd(res);
    expect(text).toMatch(/^: the credential is no longer valid: reconnect with Last-Event-ID/m);
  });

  it("a service's log follow ends once its key is revoked", async () => {
    const { deviceId } = await registerDevice("follow-revoked");
    const module = await uploadModule("countService");
    expect((await call("POST", `/v1/devices/${deviceId}/services`, { json: { name: "count", module } })).status).toBe(201);
    const key = (await call("POST", "/v1/keys", { json: { role: "user", namespace: "default" } })).body;
    const res = await SELF.fetch(`https://wasmvisor.test/v1/devices/${deviceId}/services/count/logs?follow=1&seconds=600`, { headers: { authorization: `Bearer ${key.key}` } });
    expect(res.status).toBe(200);
    expect((await call("DELETE", `/v1/keys/${key.id}`)).status).toBe(200);
    expect(await readToEnd(res)).toMatch(/^: the credential is no longer valid: reconnect with \?after=/m);
  });

  it("a stream opened with a session cookie ends when the session expires", async () => {
    // A session issued so that it has 2 s left.
    const issued = (await issueSession(env, { role: "admin", keyId: "bootstrap", namespace: null }, Date.now() - (SESSION_TTL_SECONDS - 2) * 1000))!;
    const res = await open("namespace=default", { cookie: `${SESSION_COOKIE}=${issued.token}` });
    expect(res.status).toBe(200);
    const text = await readToEnd(res);
    expect(text).toMatch(/^: the (stream reached its time limit|credential is no longer valid): reconnect/m);
    expect((await call("GET", "/v1/session", { token: null, headersExtra: { cookie: `${SESSION_COOKIE}=${issued.token}` } })).status).toBe(401);
  });

  it("a Last-Event-ID replay of 5,000 events delivers every one, in order, with no silent jump", async () => {
    const namespace = "replay-5k";
    await seed(namespace, 5000);
    const res = await open(`wait=0&namespace=${namespace}`, { authorization: `Bearer ${ADMIN}`, "last-event-id": "0" });
    expect(res.status).toBe(200);
    const ids: number[] = [];
    const named: string[] = [];
    const parser = createParser({ onEvent: (m) => (m.event ? named.push(m.event) : ids.push(Number(m.id))) });
    parser.feed(await res.text());
    expect(named).toEqual([]);
    expect(ids.length).toBe(5000);
    expect(ids).toEqual(Array.from({ length: 5000 }, (_, i) => i + 1));
  });

  it(`one credential holds at most ${MAX_STREAMS_PER_KEY} open streams: the next is 429 problem+json`, async () => {
    const key = (await call("POST", "/v1/keys", { json: { role: "user", namespace: "capped-ns" } })).body;
    const held: Response[] = [];
    for (let i = 0; i < MAX_STREAMS_PER_KEY; i++) {
      const res = await open("", { authorization: `Bearer ${key.key}` });
      expect(res.status).toBe(200);
      held.push(res);
    }
    const refused = await call("GET", "/v1/events", { token: key.key });
    expect(refused.status).toBe(429);
    expect(refused.type).toBe("application/problem+json");
    expect(refused.body.type).toBe("urn:wasmvisor:problem:too-many-streams");
    // another credential is not held to this one's count; a replay-only request is not a held stream
    expect((await call("GET", "/v1/events?wait=0&namespace=capped-ns", { token: ADMIN })).status).toBe(200);
    expect((await call("GET", "/v1/events?wait=0", { token: key.key })).status).toBe(200);
    // streams that end free their places at the hub: here the key is revoked, so all of them end
    const hub = eventHubStub(env, "capped-ns");
    expect(await hub.openStreams()).toBe(MAX_STREAMS_PER_KEY);
    expect((await call("DELETE", `/v1/keys/${key.id}`)).status).toBe(200);
    for (const res of held) expect(await res.text()).toMatch(/^: the credential is no longer valid/m);
    for (let i = 0; i < 200 && (await hub.openStreams()) > 0; i++) await new Promise((r) => setTimeout(r, 25));
    expect(await hub.openStreams()).toBe(0);
  });
});
