/**
 * The audit trail: every mutating request lands in its namespace's log with who, role,
 * operation, target, outcome and trace id; a tenant reads only its own log; pages are
 * keyset pages (newest first, no entry twice); retention deletes old entries from the
 * object's alarm on its own clock.
 */
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { runDurableObjectAlarm, runInDurableObject } from "./helpers.js";
import { call, DESCRIPTION, health, poll, sleep, uploadModule } from "./helpers.js";
import { auditStub } from "../../src/platform/stubs.js";

type Entry = { seq: number; time: string; namespace: string; kind: string; actor: string; role: string; operation: string; target: string; method: string | null; path: string | null; outcome: number; traceId: string | null; requestId: string | null };

async function tenant(ns: string) {
  const res = await call("POST", "/v1/keys", { json: { role: "admin", namespace: ns, label: `${ns} admin` } });
  return { key: res.body.key as string, id: res.body.id as string };
}

/** Entries are written after the response, batched: read until `until` holds. */
async function audited(token: string, query: string, until: (e: Entry[]) => boolean): Promise<Entry[]> {
  for (let i = 0; i < 100; i++) {
    const res = await call("GET", `/v1/audit?${query}`, { token });
    expect(res.status).toBe(200);
    if (until(res.body.entries)) return res.body.entries;
    await sleep(30);
  }
  throw new Error(`the audit log never showed what was expected for ${query}`);
}

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

describe("the audit trail", () => {
  it("records a mutating request with who, role, namespace, operation, target, outcome and trace id", async () => {
    const a = await tenant("audit-a");
    const made = await call("POST", "/v1/keys", { token: a.key, json: { role: "user", label: "audited" }, headersExtra: { traceparent: `00-${TRACE}-00f067aa0ba902b7-01` } });
    expect(made.status).toBe(201);
    expect(made.headers.get("traceparent")).toMatch(new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
    const refused = await call("DELETE", "/v1/keys/knotakey", { token: a.key });
    expect(refused.status).toBe(404);
    // reads are not audited
    expect((await call("GET", "/v1/keys", { token: a.key })).status).toBe(200);

    const entries = await audited(a.key, "", (e) => e.length >= 2);
    expect(entries).toHaveLength(2);
    const [deleted, created] = entries as [Entry, Entry];
    expect(created).toMatchObject({
      namespace: "audit-a", kind: "request", actor: a.id, role: "admin", operation: "postKeys", target: made.body.id,
      method: "POST", path: "/v1/keys", outcome: 201, traceId: TRACE, requestId: made.headers.get("x-request-id"),
    });
    expect(Math.abs(Date.parse(created.time) - Date.now())).toBeLessThan(60_000);
    expect(deleted).toMatchObject({ operation: "deleteKeysById", outcome: 404, path: "/v1/keys/knotakey", actor: a.id });
    expect(deleted.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(deleted.traceId).not.toBe(TRACE);
    expect(deleted.seq).toBeGreaterThan(created.seq);

    // filters
    expect((await audited(a.key, "operation=postKeys", (e) => e.length === 1))[0]!.target).toBe(made.body.id);
    expect((await audited(a.key, "outcome=404", (e) => e.length === 1))[0]!.operation).toBe("deleteKeysById");
    expect(await audited(a.key, `actor=${a.id}`, (e) => e.length === 2)).toHaveLength(2);
    expect(await audited(a.key, "actor=someone-else", (e) => e.length === 0)).toHaveLength(0);
    expect(await audited(a.key, `since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`, (e) => e.length === 0)).toHaveLength(0);
    expect(await audited(a.key, `until=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`, (e) => e.length === 2)).toHaveLength(2);
    expect((await call("GET", "/v1/audit?outcome=abc", { token: a.key })).status).toBe(400);
  });

  it("records a command sent to a device (stop a canceled job) in the device's namespace, in the job's trace", async () => {
    const a = await tenant("audit-commands");
    const register = (await call("POST", "/v1/keys", { token: a.key, json: { role: "register" } })).body.key as string;
    const dev = (await call("POST", "/v1/devices/register", { token: register, json: { name: "cmd", description: DESCRIPTION } })).body as { deviceId: string; credential: string };
    const digest = await uploadModule("math");
    const job = await call("POST", "/v1/jobs", { token: a.key, json: { device: dev.deviceId, module: digest, function: "add32", args: [1, 2] }, headersExtra: { traceparent: `00-${TRACE}-00f067aa0ba902b7-01` } });
    expect(job.status).toBe(202);
    expect(job.body.traceId).toBe(TRACE);
    const lease = (await poll(dev.credential, 1)).body.jobs[0];
    expect(lease.traceparent).toMatch(new RegExp(`^00-${TRACE}-`));
    expect((await call("POST", `/v1/jobs/${job.body.id}/cancel`, { token: a.key })).status).toBe(200);
    const hb = await call("POST", "/v1/agent/heartbeat", { token: dev.credential, json: { health: health(), runningJobs: [{ jobId: lease.jobId, leaseToken: lease.leaseToken }] } });
    expect(hb.body.cancel).toEqual([job.body.id]);
    const [stop] = await audited(a.key, "operation=command.stop", (e) => e.length === 1);
    expect(stop).toMatchObject({ kind: "command", actor: dev.deviceId, role: "control-plane", target: job.body.id, namespace: "audit-commands", traceId: TRACE, outcome: 0 });
    const [canceled] = await audited(a.key, "operation=postJobsByIdCancel", (e) => e.length === 1);
    expect(canceled).toMatchObject({ kind: "request", target: job.body.id, outcome: 200, actor: a.id });
  });

  it("shows a tenant only its own namespace", async () => {
    const a = await tenant("audit-b1");
    const b = await tenant("audit-b2");
    expect((await call("POST", "/v1/keys", { token: a.key, json: { role: "user" } })).status).toBe(201);
    expect((await call("POST", "/v1/keys", { token: b.key, json: { role: "user" } })).status).toBe(201);
    const mine = await audited(b.key, "", (e) => e.length >= 1);
    expect(mine.every((e) => e.namespace === "audit-b2" && e.actor === b.id)).toBe(true);
    expect((await call("GET", "/v1/audit?namespace=audit-b1", { token: b.key })).status).toBe(403);
    // a user key cannot read the audit log at all
    const user = (await call("POST", "/v1/keys", { token: b.key, json: { role: "user" } })).body.key as string;
    expect((await call("GET", "/v1/audit", { token: user })).status).toBe(403);
    // the unscoped admin reads any namespace's log, and its own actions land in "*"
    const ofA = await audited(env.ADMIN_TOKEN!, "namespace=audit-b1", (e) => e.length >= 1);
    expect(ofA.every((e) => e.namespace === "audit-b1")).toBe(true);
    const global = await audited(env.ADMIN_TOKEN!, "operation=postKeys", (e) => e.some((x) => x.actor === "bootstrap"));
    expect(global.every((e) => e.namespace === "*")).toBe(true);
  });

  it("pages newest first with a keyset cursor, each entry once", async () => {
    const a = await tenant("audit-pages");
    for (let i = 0; i < 7; i++) expect((await call("POST", "/v1/keys", { token: a.key, json: { role: "user", label: `k${i}` } })).status).toBe(201);
    await audited(a.key, "limit=500", (e) => e.length === 7);
    const seen: Entry[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: { entries: Entry[]; nextCursor: string | null } } = await call("GET", `/v1/audit?limit=3${cursor ? `&cursor=${cursor}` : ""}`, { token: a.key });
      expect(res.status).toBe(200);
      expect(res.body.entries.length).toBeLessThanOrEqual(3);
      seen.push(...res.body.entries);
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toHaveLength(7);
    expect(new Set(seen.map((e) => e.seq)).size).toBe(7);
    const seqs = seen.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => y - x));
  });

  it("deletes entries past the retention (AUDIT_RETENTION_DAYS, default 90) from its alarm", async () => {
    const a = await tenant("audit-retention");
    expect((await call("POST", "/v1/keys", { token: a.key, json: { role: "user" } })).status).toBe(201);
    await audited(a.key, "", (e) => e.length === 1);
    const log = auditStub(env, "audit-retention");
    const day = 24 * 60 * 60 * 1000;
    await runInDurableObject(log, (obj) => obj.clock.set(Date.now() + 89 * day));
    expect(await runDurableObjectAlarm(log)).toBe(true);
    expect(await audited(a.key, "", () => true)).toHaveLength(1);
    await runInDurableObject(log, (obj) => obj.clock.set(Date.now() + 91 * day));
    expect(await runDurableObjectAlarm(log)).toBe(true);
    expect(await audited(a.key, "", () => true)).toHaveLength(0);
  });
});
