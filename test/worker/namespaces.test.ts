/** Tenants sharing one control plane do not see each other. */
import { describe, expect, it } from "vitest";
import { call, DESCRIPTION, sleep, uploadModule } from "./helpers.js";

async function tenant(ns: string) {
  const admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: ns } })).body.key as string;
  const user = (await call("POST", "/v1/keys", { token: admin, json: { role: "user" } })).body;
  const register = (await call("POST", "/v1/keys", { token: admin, json: { role: "register" } })).body.key as string;
  const dev = (await call("POST", "/v1/devices/register", { token: register, json: { name: `${ns}-dev`, description: DESCRIPTION } })).body;
  return { admin, user: user.key as string, userKeyId: user.id as string, userNamespace: user.namespace, deviceId: dev.deviceId as string, credential: dev.credential as string };
}

describe("namespaces", () => {
  it("puts devices and keys in the namespace of the key that made them", async () => {
    const a = await tenant("acme");
    expect(a.userNamespace).toBe("acme");
    expect((await call("GET", `/v1/devices/${a.deviceId}`, { token: a.user })).body.namespace).toBe("acme");
  });

  it("hides one tenant's devices, jobs and keys from another, as if they did not exist", async () => {
    const a = await tenant("tenant-a");
    const b = await tenant("tenant-b");
    const digest = await uploadModule("math");

    expect((await call("GET", `/v1/devices/${b.deviceId}`, { token: a.user })).status).toBe(404);
    expect((await call("POST", `/v1/devices/${b.deviceId}/drain`, { token: a.user })).status).toBe(404);
    const listed = (await call("GET", "/v1/devices?limit=500", { token: a.user })).body.devices.map((d: { id: string }) => d.id);
    expect(listed).toContain(a.deviceId);
    expect(listed).not.toContain(b.deviceId);

    const intoB = await call("POST", "/v1/jobs", { token: a.user, json: { device: b.deviceId, module: digest, function: "add32", args: [1, 2] } });
    expect(intoB.status).toBe(404);
    const batch = await call("POST", "/v1/jobs/batch", { token: a.user, json: { jobs: [{ device: b.deviceId, module: digest, function: "add32", args: [1, 2] }] } });
    expect(batch.status).toBe(404);

    const jobOfB = (await call("POST", "/v1/jobs", { token: b.user, json: { device: b.deviceId, module: digest, function: "add32", args: [1, 2] } })).body.id;
    for (const [m, path] of [["GET", `/v1/jobs/${jobOfB}`], ["GET", `/v1/jobs/${jobOfB}/result`], ["GET", `/v1/jobs/${jobOfB}/logs`], ["POST", `/v1/jobs/${jobOfB}/cancel`], ["DELETE", `/v1/jobs/${jobOfB}`]] as const) {
      expect((await call(m, path, { token: a.user })).status, `${m} ${path}`).toBe(404);
    }
    expect((await call("GET", `/v1/jobs/${jobOfB}`, { token: b.user })).status).toBe(200);

    // Both tenants have a job in the index before the listings are compared: an empty listing proves nothing.
    const jobOfA = (await call("POST", "/v1/jobs", { token: a.user, json: { device: a.deviceId, module: digest, function: "add32", args: [1, 2] } })).body.id;
    const listJobs = async (t: { user: string }) => ((await call("GET", "/v1/jobs?limit=500", { token: t.user })).body.jobs as { id: string; device: string }[]);
    let jobsOfA: { id: string; device: string }[] = [];
    let jobsOfB: { id: string; device: string }[] = [];
    for (let i = 0; i < 100; i++) {
      [jobsOfA, jobsOfB] = [await listJobs(a), await listJobs(b)];
      if (jobsOfA.some((j) => j.id === jobOfA) && jobsOfB.some((j) => j.id === jobOfB)) break;
      await sleep(50);
    }
    expect(jobsOfA.map((j) => j.id)).toContain(jobOfA);
    expect(jobsOfB.map((j) => j.id)).toContain(jobOfB);
    expect(jobsOfA.map((j) => j.device)).not.toContain(b.deviceId);
    expect(jobsOfB.map((j) => j.device)).not.toContain(a.deviceId);

    expect((await call("GET", "/v1/keys", { token: a.admin })).body.keys.every((k: { namespace: string }) => k.namespace === "tenant-a")).toBe(true);
    expect((await call("DELETE", `/v1/keys/${b.userKeyId}`, { token: a.admin })).status).toBe(404);
    expect((await call("POST", "/v1/keys", { token: a.admin, json: { role: "user", namespace: "tenant-b" } })).status).toBe(403);
  });

  it("lets an unscoped admin see every namespace", async () => {
    const a = await tenant("seen-a");
    const b = await tenant("seen-b");
    const all = (await call("GET", "/v1/devices?limit=500")).body.devices.map((d: { id: string }) => d.id);
    expect(all).toEqual(expect.arrayContaining([a.deviceId, b.deviceId]));
  });
});
