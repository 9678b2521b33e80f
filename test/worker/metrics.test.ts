/**
 * GET /metrics after real activity: devices registered with agent versions, one online,
 * jobs submitted, leased and finished. The text is parsed by a real Prometheus parser
 * (parse-prometheus-text-format), and the values must match what happened. Each tenant's
 * metrics key sees only its own namespace. Services by status, deployment parts by state and
 * rollouts by state move as a service's status, a part's state and a rollout's state change.
 */
import { describe, expect, it } from "vitest";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { call, DESCRIPTION, health, poll, report, sleep, submit, uploadModule } from "./helpers.js";

type Parsed = { name: string; type: string; help: string; metrics: { labels?: Record<string, string>; value?: string; buckets?: Record<string, string>; count?: string; sum?: string }[] }[];

async function scrape(token: string): Promise<{ text: string; families: Parsed; type: string | null }> {
  const res = await call("GET", "/metrics", { token });
  expect(res.status).toBe(200);
  return { text: res.body as string, families: parsePrometheusTextFormat(res.body as string) as Parsed, type: res.type };
}

function value(families: Parsed, name: string, labels: Record<string, string> = {}): number | undefined {
  const f = families.find((x) => x.name === name);
  const m = f?.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  return m?.value === undefined ? undefined : Number(m.value);
}

async function tenant(ns: string) {
  const admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: ns } })).body.key as string;
  const metrics = (await call("POST", "/v1/keys", { json: { role: "metrics", namespace: ns } })).body.key as string;
  const register = (await call("POST", "/v1/keys", { token: admin, json: { role: "register" } })).body.key as string;
  const device = async (name: string, version: string) => {
    const res = await call("POST", "/v1/devices/register", { token: register, json: { name, description: { ...DESCRIPTION, agent: { version, node: "v20", poolSize: 2 } } } });
    expect(res.status).toBe(201);
    return res.body as { deviceId: string; credential: string };
  };
  return { admin, metrics, device };
}

/** The feeds are asynchronous (tens of ms): scrape until the expectation holds. */
async function scrapeUntil(token: string, ok: (f: Parsed) => boolean) {
  for (let i = 0; i < 100; i++) {
    const s = await scrape(token);
    if (ok(s.families)) return s;
    await sleep(50);
  }
  const last = await scrape(token);
  throw new Error(`the metrics never showed what was expected:\n${last.text}`);
}

describe("GET /metrics", () => {
  it("reports devices, jobs by state, queue depth, latency and agent versions after real activity, per tenant", async () => {
    const a = await tenant("obs-a");
    const b = await tenant("obs-b");
    const d1 = await a.device("m1", "1.2.0");
    const d2 = await a.device("m2", "1.2.0");
    await a.device("m3", "2.0.0");
    await b.device("other", "9.9.9");
    expect((await call("POST", "/v1/agent/heartbeat", { token: d1.credential, json: { health: health(), runningJobs: [] } })).status).toBeLessThan(300);
    const digest = await uploadModule("math");
    for (let i = 0; i < 3; i++) expect((await submit(d1.deviceId, digest, "add32", [i, 1])).status).toBe(202);
    for (let i = 0; i < 2; i++) expect((await submit(d2.deviceId, digest, "add32", [i, 2])).status).toBe(202);
    for (let i = 0; i < 2; i++) {
      const lease = (await poll(d1.credential, 1)).body.jobs[0];
      expect((await report(d1.credential, lease.jobId, lease.leaseToken, i + 1)).status).toBeLessThan(300);
    }

    const { families, type, text } = await scrapeUntil(a.metrics, (f) => value(f, "wasmvisor_jobs", { state: "SUCCEEDED" }) === 2 && value(f, "wasmvisor_queue_depth") === 3);
    expect(type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(value(families, "wasmvisor_devices", { status: "online" })).toBe(1);
    expect(value(families, "wasmvisor_devices", { status: "offline" })).toBe(2);
    expect(value(families, "wasmvisor_agent_versions", { version: "1.2.0" })).toBe(2);
    expect(value(families, "wasmvisor_agent_versions", { version: "2.0.0" })).toBe(1);
    expect(value(families, "wasmvisor_agent_versions", { version: "9.9.9" })).toBeUndefined();
    expect(value(families, "wasmvisor_jobs", { state: "QUEUED" })).toBe(3);
    expect(value(families, "wasmvisor_jobs", { state: "FAILED" })).toBe(0);
    expect(value(families, "wasmvisor_jobs_ended_total", { state: "SUCCEEDED" })).toBe(2);
    expect(value(families, "wasmvisor_queue_depth_top", { device: d2.deviceId })).toBe(2);
    expect(value(families, "wasmvisor_queue_depth_top", { device: d1.deviceId })).toBe(1);
    const types = Object.fromEntries(families.map((f) => [f.name, f.type]));
    expect(types).toMatchObject({ wasmvisor_devices: "GAUGE", wasmvisor_jobs: "GAUGE", wasmvisor_jobs_ended_total: "COUNTER", wasmvisor_job_wait_seconds: "HISTOGRAM", wasmvisor_job_run_seconds: "HISTOGRAM" });
    const wait = families.find((f) => f.name === "wasmvisor_job_wait_seconds")!.metrics[0]!;
    expect(Number(wait.count)).toBe(2);
    expect(Number(wait.buckets!["+Inf"])).toBe(2);
    expect(Number(wait.sum)).toBeGreaterThanOrEqual(0);
    const bounds = Object.keys(wait.buckets!).sort((x, y) => Number(x.replace("+Inf", "Infinity")) - Number(y.replace("+Inf", "Infinity")));
    expect(bounds).toContain("0.005");
    // cumulative buckets never decrease
    const counts = bounds.map((k) => Number(wait.buckets![k]));
    expect(counts).toEqual([...counts].sort((x, y) => x - y));
    expect(Number(families.find((f) => f.name === "wasmvisor_job_run_seconds")!.metrics[0]!.count)).toBe(2);
    // never a series per device beyond the top-k
    expect(text.split("\n").filter((l) => l.startsWith("wasmvisor_queue_depth_top{")).length).toBeLessThanOrEqual(10);

    // The other tenant sees its own fleet only.
    const other = await scrapeUntil(b.metrics, (f) => value(f, "wasmvisor_devices", { status: "offline" }) === 1);
    expect(value(other.families, "wasmvisor_jobs", { state: "SUCCEEDED" })).toBe(0);
    expect(value(other.families, "wasmvisor_queue_depth")).toBe(0);
    expect(value(other.families, "wasmvisor_agent_versions", { version: "9.9.9" })).toBe(1);
  });

  it("a metrics key reads /metrics and nothing else; a user key may not scrape", async () => {
    const metrics = (await call("POST", "/v1/keys", { json: { role: "metrics" } })).body.key as string;
    const user = (await call("POST", "/v1/keys", { json: { role: "user" } })).body.key as string;
    expect((await call("GET", "/metrics", { token: metrics })).status).toBe(200);
    expect((await call("GET", "/metrics", { token: user })).status).toBe(403);
    expect((await call("GET", "/metrics", { token: null })).status).toBe(401);
    expect((await call("GET", "/v1/jobs", { token: metrics })).status).toBe(403);
    expect((await call("GET", "/v1/devices", { token: metrics })).status).toBe(403);
  });

  it("services by status, deployment parts by state and rollouts by state follow each change, from pushed aggregates", async () => {
    const ns = "obs-parts";
    const t = await tenant(ns);
    const user = (await call("POST", "/v1/keys", { token: t.admin, json: { role: "user" } })).body.key as string;
    const register = (await call("POST", "/v1/keys", { token: t.admin, json: { role: "register" } })).body.key as string;
    const reg = await call("POST", "/v1/devices/register", { token: register, json: { name: "p1", description: { ...DESCRIPTION, capabilities: { cameras: [], sensors: [], labels: { fleet: "obs" } } } } });
    expect(reg.status).toBe(201);
    const dev = reg.body as { deviceId: string; credential: string };
    expect((await call("POST", "/v1/agent/heartbeat", { token: dev.credential, json: { health: health() } })).status).toBe(200);

    // A service: STARTING when created, RUNNING once its agent says so, then CRASHED.
    const counter = await uploadModule("countService");
    expect((await call("POST", `/v1/devices/${dev.deviceId}/services`, { token: user, json: { name: "count", module: counter } })).status).toBe(201);
    await scrapeUntil(t.metrics, (f) => value(f, "wasmvisor_services", { status: "STARTING" }) === 1);
    const actual = (status: string) => ({
      name: "count", run: 1, status, reason: "test", exitCode: null, restarts: 0, lastError: null, startedAt: 1_700_000_000_000, restartAt: null,
      pid: 1, cpuMs: 1, cpuPercent: 1, rssBytes: 1, resets: 0, lines: [],
    });
    expect((await call("POST", "/v1/agent/heartbeat", { token: dev.credential, json: { health: health(), services: [actual("RUNNING")] } })).status).toBe(200);
    let s = await scrapeUntil(t.metrics, (f) => value(f, "wasmvisor_services", { status: "RUNNING" }) === 1);
    expect(value(s.families, "wasmvisor_services", { status: "STARTING" })).toBe(0);
    expect(value(s.families, "wasmvisor_services", { status: "CRASHED" })).toBe(0);
    expect((await call("POST", "/v1/agent/heartbeat", { token: dev.credential, json: { health: health(), services: [actual("CRASHED")] } })).status).toBe(200);
    s = await scrapeUntil(t.metrics, (f) => value(f, "wasmvisor_services", { status: "CRASHED" }) === 1);
    expect(value(s.families, "wasmvisor_services", { status: "RUNNING" })).toBe(0);
    // the same report again (a re-sent heartbeat) counts nothing twice
    expect((await call("POST", "/v1/agent/heartbeat", { token: dev.credential, json: { health: health(), services: [actual("CRASHED")] } })).status).toBe(200);
    expect(value((await scrape(t.metrics)).families, "wasmvisor_services", { status: "CRASHED" })).toBe(1);

    // A deployment's part: pending when placed, active once the agent applied it.
    const pair = await generateKeyPair("EdDSA", { extractable: true });
    const kid = (await call("POST", "/v1/orchestrator-keys", { token: t.admin, json: { jwk: await exportJWK(pair.publicKey), label: "obs" } })).body.kid as string;
    const sign = (deployment: unknown) => new SignJWT({ deployment }).setProtectedHeader({ alg: "EdDSA", kid }).setIssuedAt().setExpirationTime("5m").setJti(crypto.randomUUID()).sign(pair.privateKey);
    const math = await uploadModule("math");
    const counterModule = await uploadModule("counter");
    const manifest = (digest: string, fn: string) => ({
      id: "obs-app", selector: { labels: { fleet: "obs" } },
      modules: [{ name: "app", digest, functions: { [fn]: fn === "add32" ? { params: [{ name: "a", type: "integer" }, { name: "b", type: "integer" }], result: "integer" } : { result: "integer" } } }],
    });
    expect((await call("POST", "/v1/deployments", { token: user, body: await sign(manifest(counterModule, "count")), type: "application/jose" })).status).toBe(201);
    await scrapeUntil(t.metrics, (f) => value(f, "wasmvisor_deployment_parts", { state: "pending" }) === 1);
    const desired = (await call("GET", "/v1/agent/deployments", { token: dev.credential })).body as { deployments: { deployment: string; generation: number }[] };
    const states = desired.deployments.map((p) => ({ deployment: p.deployment, generation: p.generation, state: "active", reason: null }));
    expect((await call("POST", "/v1/agent/deployments/status", { token: dev.credential, json: { states } })).status).toBe(200);
    s = await scrapeUntil(t.metrics, (f) => value(f, "wasmvisor_deployment_parts", { state: "active" }) === 1);
    expect(value(s.families, "wasmvisor_deployment_parts", { state: "pending" })).toBe(0);
    expect(value(s.families, "wasmvisor_deployment_parts", { state: "applying" })).toBe(0);

    // A rollout: running when started, paused, then aborted.
    expect(value(s.families, "wasmvisor_rollouts", { state: "running" })).toBe(0);
    // (the test's heartbeat timeout is 600 ms: the device is heard from just before its rollout picks it)
    expect((await call("POST", "/v1/agent/heartbeat", { token: dev.credential, json: { health: health() } })).status).toBe(200);
    const rolloutBody = { id: "obs-ro", deployment: await sign(manifest(math, "add32")), strategy: { waveSize: { count: 1 } }, gate: { soakMs: 3_600_000 } };
    expect((await call("POST", "/v1/agent/heartbeat", { token: dev.credential, json: { health: health() } })).status).toBe(200);
    const started = await call("POST", "/v1/rollouts", { token: user, json: rolloutBody });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    s = await scrapeUntil(t.metrics, (f) => value(f, "wasmvisor_rollouts", { state: "running" }) === 1);
    expect((await call("POST", "/v1/rollouts/obs-ro/pause", { token: user })).status).toBe(200);
    s = await scrapeUntil(t.metrics, (f) => value(f, "wasmvisor_rollouts", { state: "paused" }) === 1);
    expect(value(s.families, "wasmvisor_rollouts", { state: "running" })).toBe(0);
    expect((await call("POST", "/v1/rollouts/obs-ro/abort", { token: user })).status).toBe(200);
    s = await scrapeUntil(t.metrics, (f) => value(f, "wasmvisor_rollouts", { state: "aborted" }) === 1);
    expect(value(s.families, "wasmvisor_rollouts", { state: "paused" })).toBe(0);
    const types = Object.fromEntries(s.families.map((f) => [f.name, f.type]));
    expect(types).toMatchObject({ wasmvisor_services: "GAUGE", wasmvisor_deployment_parts: "GAUGE", wasmvisor_rollouts: "GAUGE" });

    // The rollout listing, and the stream's events for the service and the rollout.
    const listed = await call("GET", "/v1/rollouts", { token: user });
    expect(listed.body.rollouts).toEqual([expect.objectContaining({ id: "obs-ro", namespace: ns, deployment: "obs-app", state: "aborted" })]);
    const stream = await call("GET", "/v1/events?tail=100&wait=0&kind=service.*,rollout.*", { token: user });
    const kinds = [...String(stream.body).matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]!) as { kind: string; data: Record<string, unknown> });
    expect(kinds.map((e) => e.kind), JSON.stringify(kinds)).toEqual(["service.starting", "service.running", "service.crashed", "rollout.running", "rollout.paused", "rollout.aborted"]);
    expect(kinds[2]!.data).toMatchObject({ name: "count", status: "CRASHED", from: "RUNNING" });
    expect(kinds[4]!.data).toMatchObject({ rollout: "obs-ro", state: "paused", from: "running" });

    // Another tenant's scrape sees none of it.
    const other = await tenant("obs-parts-other");
    const o = await scrape(other.metrics);
    expect(value(o.families, "wasmvisor_services", { status: "CRASHED" })).toBe(0);
    expect(value(o.families, "wasmvisor_rollouts", { state: "aborted" })).toBe(0);
    expect(value(o.families, "wasmvisor_deployment_parts", { state: "active" })).toBe(0);
  });
});
