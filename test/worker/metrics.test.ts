/**
 * GET /metrics after real activity: devices registered with agent versions, one online,
 * jobs submitted, leased and finished. The text is parsed by a real Prometheus parser
 * (parse-prometheus-text-format), and the values must match what happened. Each tenant's
 * metrics key sees only its own namespace.
 */
import { describe, expect, it } from "vitest";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
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
});
