/**
 * Retention (issue 9, hole 7): ended jobs go after their namespace's retention with their
 * logs, files in R2, idempotency keys and index rows; idempotency keys go after their
 * window; nothing younger and no job that has not ended is touched. Time is the device
 * object's injected clock, moved by hand; the alarm is run by hand.
 */
import { describe, expect, it } from "vitest";
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { call, DESCRIPTION, poll, sleep, uploadModule } from "./helpers.js";

const HOUR = 60 * 60 * 1000;
const MINUTE = 60 * 1000;

async function tenant(ns: string) {
  const admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: ns } })).body.key as string;
  const register = (await call("POST", "/v1/keys", { token: admin, json: { role: "register" } })).body.key as string;
  const dev = (await call("POST", "/v1/devices/register", { token: register, json: { name: `${ns}-dev`, description: DESCRIPTION } })).body;
  return { admin, deviceId: dev.deviceId as string, credential: dev.credential as string };
}

async function deployFiles(admin: string, deviceId: string, digest: string) {
  const pair = await generateKeyPair("EdDSA", { extractable: true });
  const kid = (await call("POST", "/v1/orchestrator-keys", { token: admin, json: { jwk: await exportJWK(pair.publicKey) } })).body.kid as string;
  const deployment = {
    id: "files",
    modules: [{
      name: "math", digest, devices: [deviceId],
      functions: { add32: { params: [{ name: "a", type: "integer" }, { name: "b", type: "integer" }], inputs: [{ name: "in.txt" }], outputs: [{ name: "out.txt" }], result: "integer" } },
    }],
  };
  const token = await new SignJWT({ deployment }).setProtectedHeader({ alg: "EdDSA", kid }).setIssuedAt().setExpirationTime("5m").setJti(crypto.randomUUID()).sign(pair.privateKey);
  const res = await call("POST", "/v1/deployments", { token: admin, body: token, type: "application/jose" });
  expect(res.status).toBeLessThan(300);
}

/** The agent's side of one job: take the lease, upload its output file (for calls), report with a log line. */
async function runOne(credential: string, withOutput: boolean) {
  const lease = (await poll(credential, 1)).body.jobs[0] as { jobId: string; leaseToken: string };
  if (withOutput) {
    const put = await call("PUT", `/v1/agent/jobs/${lease.jobId}/outputs/out.txt`, { token: credential, body: "result bytes", type: "application/octet-stream", headersExtra: { "x-lease-token": lease.leaseToken } });
    expect(put.status).toBe(204);
  }
  const res = await call("POST", "/v1/agent/results", {
    token: credential,
    json: { results: [{
      jobId: lease.jobId, leaseToken: lease.leaseToken, outcome: "succeeded", error: null,
      logs: [{ at: 1, stream: "stdout", line: "hello" }],
      result: { value: 3, exitCode: null, stdout: "hello\n", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 1, ...(withOutput ? { files: [{ name: "out.txt", size: 12 }] } : {}) },
    }] },
  });
  expect(res.body.dispositions?.[0]?.disposition ?? res.body[0]?.disposition ?? "accepted").toBe("accepted");
  return lease.jobId;
}

const r2Keys = async (jobId: string) => (await env.MODULES.list({ prefix: `jobs/${jobId}/` })).objects.map((o) => o.key);

async function listedIds(token: string, deviceId: string): Promise<string[]> {
  return (await call("GET", `/v1/jobs?device=${deviceId}&limit=500`, { token })).body.jobs.map((j: { id: string }) => j.id);
}

describe("retention", () => {
  it("is set per namespace, validated, and documented with its defaults", async () => {
    const t = await tenant("keep-settings");
    const defaults = await call("GET", "/v1/namespaces/keep-settings/settings", { token: t.admin });
    expect(defaults.body).toEqual({ requireSignedJobs: false, retention: { endedJobsSeconds: 7 * 24 * 3600, idempotencySeconds: 24 * 3600 } });
    const set = await call("PUT", "/v1/namespaces/keep-settings/settings", { token: t.admin, json: { requireSignedJobs: false, retention: { endedJobsSeconds: 3600 } } });
    expect(set.status).toBe(200);
    expect(set.body.retention).toEqual({ endedJobsSeconds: 3600, idempotencySeconds: 24 * 3600 });
    const bad = await call("PUT", "/v1/namespaces/keep-settings/settings", { token: t.admin, json: { requireSignedJobs: false, retention: { endedJobsSeconds: -1 } } });
    expect(bad.status).toBe(400);
    expect(bad.type).toBe("application/problem+json");
    const spec = (await call("GET", "/openapi.json")).body;
    expect(JSON.stringify(spec.paths["/v1/namespaces/{ns}/settings"].put)).toContain("endedJobsSeconds");
  });

  it("deletes ended jobs past retention with their logs, files, idempotency keys and index rows; keeps the younger and the unended", async () => {
    const t = await tenant("keep");
    const digest = await uploadModule("math");
    await deployFiles(t.admin, t.deviceId, digest);
    expect((await call("PUT", "/v1/namespaces/keep/settings", { json: { requireSignedJobs: false, retention: { endedJobsSeconds: 3600, idempotencySeconds: 1800 } } })).status).toBe(200);
    const device = env.DEVICES.get(env.DEVICES.idFromName(t.deviceId));
    // A day ahead of real time: alarms the object sets by its clock never fire on their own here, only when the test runs them.
    const t0 = Date.now() + 24 * HOUR;
    await runInDurableObject(device, (obj) => obj.clock.set(t0));

    const submitKeyed = (key: string, a: number, extra: Record<string, unknown> = {}) =>
      call("POST", "/v1/jobs", { token: t.admin, json: { device: t.deviceId, module: digest, function: "add32", args: [a, 1], ...extra }, headersExtra: { "idempotency-key": key } });
    const callWithFile = async () => {
      const form = new FormData();
      form.append("in.txt", new Blob(["input bytes"]), "in.txt");
      const res = await call("POST", `/v1/deployments/files/modules/math/add32?a=1&b=2&device=${t.deviceId}`, { token: t.admin, body: form });
      expect(res.status).toBe(202);
      return res.body.job as string;
    };

    // At t0: an ended call with files, an ended keyed job, and a keyed job that is never started.
    const oldCall = await callWithFile();
    expect(await runOne(t.credential, true)).toBe(oldCall);
    expect((await r2Keys(oldCall)).sort()).toEqual([`jobs/${oldCall}/inputs/in.txt`, `jobs/${oldCall}/outputs/out.txt`]);
    const oldKeyed = (await submitKeyed("old-ended", 1)).body.id as string;
    expect(await runOne(t.credential, false)).toBe(oldKeyed);
    const created = (await submitKeyed("old-created", 2, { start: false })).body.id as string;
    // 50 minutes later: a younger ended keyed job.
    await runInDurableObject(device, (obj) => obj.clock.set(t0 + 50 * MINUTE));
    const youngKeyed = (await submitKeyed("young", 3)).body.id as string;
    expect(await runOne(t.credential, false)).toBe(youngKeyed);

    // Past the hour for the t0 jobs; the idempotency window (30 min) of "young" has not passed.
    await runInDurableObject(device, (obj) => obj.clock.set(t0 + 61 * MINUTE));
    expect(await runDurableObjectAlarm(device)).toBe(true);

    for (const gone of [oldCall, oldKeyed]) {
      expect((await call("GET", `/v1/jobs/${gone}`, { token: t.admin })).status).toBe(404);
      expect((await call("GET", `/v1/jobs/${gone}/logs`, { token: t.admin })).status).toBe(404);
      expect(await r2Keys(gone)).toEqual([]);
    }
    const logRows = await runInDurableObject(device, (obj) =>
      (obj as unknown as { ctx: DurableObjectState }).ctx.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM job_logs WHERE job_id IN (?, ?)", oldCall, oldKeyed).one().n,
    );
    expect(logRows).toBe(0);
    for (const kept of [created, youngKeyed]) expect((await call("GET", `/v1/jobs/${kept}`, { token: t.admin })).status).toBe(200);
    expect((await call("GET", `/v1/jobs/${youngKeyed}/logs`, { token: t.admin })).body.lines.length).toBe(1);
    // Idempotency: "young" still answers its job; the keys of t0 are free again (also of the job that stays).
    const again = await submitKeyed("young", 3);
    expect(again.body.id).toBe(youngKeyed);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect((await submitKeyed("old-ended", 1)).body.id).not.toBe(oldKeyed);
    const reused = await submitKeyed("old-created", 2, { start: false });
    expect(reused.body.id).not.toBe(created);
    expect(reused.headers.get("idempotent-replayed")).toBeNull();

    // The index forgets the deleted jobs.
    let listed: string[] = [];
    for (let i = 0; i < 60; i++) {
      listed = await listedIds(t.admin, t.deviceId);
      if (!listed.includes(oldCall) && !listed.includes(oldKeyed)) break;
      await sleep(50);
    }
    expect(listed).not.toContain(oldCall);
    expect(listed).not.toContain(oldKeyed);
    expect(listed).toEqual(expect.arrayContaining([created, youngKeyed]));
  });

  it("works off a backlog in runs of at most 500 jobs, each run scheduling the next", async () => {
    const t = await tenant("keep-backlog");
    const digest = await uploadModule("math");
    expect((await call("PUT", "/v1/namespaces/keep-backlog/settings", { json: { requireSignedJobs: false, retention: { endedJobsSeconds: 3600 } } })).status).toBe(200);
    const device = env.DEVICES.get(env.DEVICES.idFromName(t.deviceId));
    // A day ahead of real time: alarms the object sets by its clock never fire on their own here, only when the test runs them.
    const t0 = Date.now() + 24 * HOUR;
    await runInDurableObject(device, (obj) => obj.clock.set(t0));
    // 501 jobs that end on their own: created, never started, past their deadline.
    const deadline = new Date(t0 + MINUTE).toISOString();
    const jobs = Array.from({ length: 501 }, (_, i) => ({ device: t.deviceId, module: digest, function: "add32", args: [i, 1], start: false, deadline }));
    expect((await call("POST", "/v1/jobs/batch", { token: t.admin, json: { jobs } })).status).toBe(202);
    await runInDurableObject(device, (obj) => obj.clock.set(t0 + 2 * MINUTE));
    expect(await runDurableObjectAlarm(device)).toBe(true);
    const count = () => runInDurableObject(device, (obj) =>
      (obj as unknown as { ctx: DurableObjectState }).ctx.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM jobs WHERE state = 'EXPIRED'").one().n);
    expect(await count()).toBe(501);

    await runInDurableObject(device, (obj) => obj.clock.set(t0 + 2 * MINUTE + HOUR + 1000));
    expect(await runDurableObjectAlarm(device)).toBe(true);
    expect(await count()).toBe(1);
    expect(await runDurableObjectAlarm(device)).toBe(true); // the run left work: the alarm is set again
    expect(await count()).toBe(0);
  });

  it("deletes a job's stored files with it on DELETE /v1/jobs/:id", async () => {
    const t = await tenant("keep-delete");
    const digest = await uploadModule("math");
    await deployFiles(t.admin, t.deviceId, digest);
    const form = new FormData();
    form.append("in.txt", new Blob(["input bytes"]), "in.txt");
    const id = (await call("POST", `/v1/deployments/files/modules/math/add32?a=1&b=2&device=${t.deviceId}`, { token: t.admin, body: form })).body.job as string;
    expect(await runOne(t.credential, true)).toBe(id);
    expect((await r2Keys(id)).sort()).toEqual([`jobs/${id}/inputs/in.txt`, `jobs/${id}/outputs/out.txt`]);
    expect((await call("DELETE", `/v1/jobs/${id}`, { token: t.admin })).status).toBe(200);
    expect(await r2Keys(id)).toEqual([]);
  });
});
