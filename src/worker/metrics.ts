/**
 * What GET /metrics reports, as a list of collectors: each reads aggregates that objects
 * already keep (the device listing's shards, the job index's shards, the registry), never
 * a device object, and answers metric families. Adding a series is one line in
 * `COLLECTORS` (or one `addCollector` call from another module). docs/observability.md.
 */
import { boundLabelValues, LATENCY_BUCKETS, MAX_VERSION_LABELS, type Family } from "../core/metrics.js";
import type { Env } from "../platform/env.js";
import { settingsFrom } from "../platform/settings.js";
import { deviceListStub, jobIndexShards, registryStub } from "../platform/stubs.js";
import { JOB_STATES } from "../protocol/job.js";
import { usage } from "../platform/usage.js";
import { ServiceStatus } from "../protocol/service.js";
import { DeploymentState } from "../protocol/deployment.js";
import { RolloutState } from "../protocol/rollout.js";

/** Collects some families for one namespace, or for all when `namespace` is null. */
export type Collector = (env: Env, namespace: string | null) => Promise<Family[]>;

/** How many of the deepest device queues get their own series. */
export const QUEUE_TOP_K = 10;
const NAMESPACES_PER_READ = 500;

/** Every namespace with devices (or just the caller's). */
async function namespaces(env: Env, namespace: string | null): Promise<string[]> {
  if (namespace !== null) return [namespace];
  const out: string[] = [];
  let from: string | null = null;
  for (;;) {
    const page = await registryStub(env).deviceNamespaces(from, NAMESPACES_PER_READ + 1);
    out.push(...page.slice(0, NAMESPACES_PER_READ));
    if (page.length <= NAMESPACES_PER_READ) return out;
    from = page[NAMESPACES_PER_READ]!;
  }
}

/** Every value of a label first (at 0), so a series exists before its first count. */
const zeroes = (values: readonly string[]) => new Map<string, number>(values.map((v) => [v, 0]));

/**
 * Devices by status and agent version, services by status and deployment parts by state,
 * from the listing's shards (namespaces x DEVICE_LIST_SHARDS reads; devices push their
 * changes there: device-presence.ts, device-tallies.ts).
 */
const devices: Collector = async (env, namespace) => {
  const shards = settingsFrom(env).deviceListShards;
  const reads = (await namespaces(env, namespace)).flatMap((ns) => Array.from({ length: shards }, (_, i) => deviceListStub(env, ns, i).metrics()));
  const byStatus = new Map<string, number>([["online", 0], ["offline", 0]]);
  const byVersion = new Map<string, number>();
  const services = zeroes(ServiceStatus.options);
  const parts = zeroes(DeploymentState.options);
  for (const shard of await Promise.all(reads)) {
    for (const r of shard.devices) {
      byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + r.n);
      byVersion.set(r.version, (byVersion.get(r.version) ?? 0) + r.n);
    }
    for (const r of shard.parts) {
      const into = r.kind === "service" ? services : r.kind === "deployment" ? parts : null;
      into?.set(r.state, (into.get(r.state) ?? 0) + r.n);
    }
  }
  return [
    { name: "wasmvisor_services", help: "Services on devices, by the status their agent last reported (or the control plane set).", type: "gauge", samples: [...services].map(([status, value]) => ({ labels: { status }, value })) },
    { name: "wasmvisor_deployment_parts", help: "Deployments' parts on devices (one per deployment and device), by state.", type: "gauge", samples: [...parts].map(([state, value]) => ({ labels: { state }, value })) },
    { name: "wasmvisor_devices", help: "Registered devices by status.", type: "gauge", samples: [...byStatus].map(([status, value]) => ({ labels: { status }, value })) },
    {
      name: "wasmvisor_agent_versions", help: `Devices by the agent version they registered with (the ${MAX_VERSION_LABELS} most common; the rest as "other").`, type: "gauge",
      samples: [...boundLabelValues(byVersion, MAX_VERSION_LABELS)].map(([version, value]) => ({ labels: { version }, value })),
    },
  ];
};

/** Jobs by state, ended jobs, queue depth and latency, from the job index's shards (INDEX_SHARDS reads). */
const jobs: Collector = async (env, namespace) => {
  const shards = await Promise.all(jobIndexShards(env).map((s) => s.metrics(namespace, QUEUE_TOP_K)));
  const held = new Map<string, number>(JOB_STATES.map((s) => [s, 0]));
  const ended = new Map<string, number>();
  const latency = { wait: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0), run: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0) };
  const sums = { wait: 0, run: 0 };
  let queued = 0;
  const top: { device: string; n: number }[] = [];
  for (const s of shards) {
    for (const j of s.jobs) held.set(j.state, (held.get(j.state) ?? 0) + j.n);
    for (const j of s.ended) ended.set(j.state, (ended.get(j.state) ?? 0) + j.n);
    for (const l of s.latency) if (l.metric === "wait" || l.metric === "run") latency[l.metric][l.bucket] = (latency[l.metric][l.bucket] ?? 0) + l.n;
    for (const l of s.latencySums) if (l.metric === "wait" || l.metric === "run") sums[l.metric] += l.sumMs / 1000;
    queued += s.queued;
    top.push(...s.queueTop);
  }
  top.sort((a, b) => b.n - a.n || (a.device < b.device ? -1 : 1));
  return [
    { name: "wasmvisor_jobs", help: "Jobs held (not yet deleted by retention) by state.", type: "gauge", samples: [...held].map(([state, value]) => ({ labels: { state }, value })) },
    { name: "wasmvisor_jobs_ended_total", help: "Jobs that reached an ended state, by that state.", type: "counter", samples: [...ended].map(([state, value]) => ({ labels: { state }, value })) },
    { name: "wasmvisor_queue_depth", help: "Jobs waiting in QUEUED, over all devices.", type: "gauge", samples: [{ value: queued }] },
    { name: "wasmvisor_queue_depth_top", help: `QUEUED jobs of the ${QUEUE_TOP_K} devices with the deepest queues.`, type: "gauge", samples: top.slice(0, QUEUE_TOP_K).map((t) => ({ labels: { device: t.device }, value: t.n })) },
    { name: "wasmvisor_job_wait_seconds", help: "Time from a job's submission to its start on a device.", type: "histogram", histograms: [{ buckets: latency.wait, sum: sums.wait }] },
    { name: "wasmvisor_job_run_seconds", help: "Time from a job's start to its end.", type: "histogram", histograms: [{ buckets: latency.run, sum: sums.run }] },
  ];
};

/** Listed deployments by source, from the registry (one read). */
const deployments: Collector = async (env, namespace) => {
  const rows = await registryStub(env).deploymentCounts(namespace);
  return [{ name: "wasmvisor_deployments", help: "Deployments listed, by source.", type: "gauge", samples: rows.map((r) => ({ labels: { source: r.source }, value: r.n })) }];
};

/**
 * What this isolate has used of what Cloudflare bills by (src/platform/usage.ts): counted
 * since it started, over all namespaces (only an unscoped scrape sees it). docs/cost.md.
 */
const runtimeUsage: Collector = async (_env, namespace) => {
  if (namespace !== null) return [];
  return [{
    name: "wasmvisor_runtime_usage_total", help: "This isolate's billed units since it started: SQL rows read and written, Durable Object calls, WebSocket messages into objects, alarms set and run.", type: "counter",
    samples: Object.entries(usage).map(([what, value]) => ({ labels: { what }, value })),
  }];
};

/** Rollouts by state, from the registry's rollout listing (one read; each rollout's object pushes its state). */
const rollouts: Collector = async (env, namespace) => {
  const byState = zeroes(RolloutState.options);
  for (const r of await registryStub(env).rolloutCounts(namespace)) byState.set(r.state, (byState.get(r.state) ?? 0) + r.n);
  return [{ name: "wasmvisor_rollouts", help: "Rollouts by state.", type: "gauge", samples: [...byState].map(([state, value]) => ({ labels: { state }, value })) }];
};

/** The collectors a scrape runs, in order. */
const COLLECTORS: Collector[] = [devices, jobs, deployments, rollouts, runtimeUsage];

/** For a feature that keeps its own aggregate: its families join every scrape. */
export function addCollector(c: Collector) {
  COLLECTORS.push(c);
}

export async function collect(env: Env, namespace: string | null): Promise<Family[]> {
  return (await Promise.all(COLLECTORS.map((c) => c(env, namespace)))).flat();
}
