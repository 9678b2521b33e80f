// Shared pieces of the benchmark suite: a control plane as users run it (workerd via wrangler,
// state persisted on disk), real agents as child processes, and latency statistics.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { WasmvisorClient } from "../dist/sdk/index.js";

process.env.CI = "true";
process.env.WRANGLER_SEND_METRICS = "false";
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.XDG_CONFIG_HOME ??= mkdtempSync(join(tmpdir(), "wv-xdg-"));

export const ADMIN = "bench-admin-token-0123456789";

/**
 * `config`: another checkout's wrangler.toml (an A/B against an earlier commit, bench/observability.mjs).
 * `stateRoot`: where the objects' SQLite files go (default: the temp dir, on disk, as users run it;
 * /dev/shm to take the local disk's fsync per object commit out of a measurement).
 */
export async function startControlPlane(config = "wrangler.toml", stateRoot = tmpdir()) {
  const { unstable_startWorker } = await import("wrangler");
  const persist = mkdtempSync(join(stateRoot, "wv-bench-state-"));
  const worker = await unstable_startWorker({
    config,
    bindings: { ADMIN_TOKEN: { type: "plain_text", value: ADMIN }, DEVICE_CREDENTIAL_KEY: { type: "plain_text", value: "bench-device-credential-key-0123456789abcdef" }, ...(process.env.LOG_LEVEL ? { LOG_LEVEL: { type: "plain_text", value: process.env.LOG_LEVEL } } : {}) },
    dev: { server: { hostname: "127.0.0.1", port: 0 }, persist, inspector: false, logLevel: "none", watch: false },
  });
  const url = (await worker.url).toString().replace(/\/$/, "");
  return { url, admin: new WasmvisorClient({ server: url, token: ADMIN }), stop: () => worker.dispose() };
}

export async function startAgent(url, token, extra = []) {
  const dataDir = mkdtempSync(join(tmpdir(), "wv-bench-agent-"));
  const proc = spawn(process.execPath, ["dist/device-agent/cli.js", "agent", "--server", url, "--token", token, "--data-dir", dataDir, ...extra], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout });
    rl.on("line", (line) => {
      if (line.includes('"agent started"')) resolve();
      if (line.includes('"level":"error"')) reject(new Error(line));
    });
    proc.on("exit", (code) => reject(new Error(`agent exited ${code}`)));
  });
  const deviceId = JSON.parse(readFileSync(join(dataDir, "credential.json"), "utf8")).deviceId;
  return { proc, deviceId, stop: () => proc.kill("SIGTERM") };
}

export function stats(samplesMs) {
  const s = [...samplesMs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, p50: q(0.5), p99: q(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

export async function timeSequential(n, fn) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    out.push(performance.now() - t);
  }
  return out;
}

/** `total` jobs by `n` concurrent submitters, each running `fn` one job at a time. */
export async function concurrent(n, total, fn) {
  let next = 0;
  const lat = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, async () => {
    while (next++ < total) {
      const t = performance.now();
      await fn();
      lat.push(performance.now() - t);
    }
  }));
  return { ...stats(lat), perSecond: total / ((performance.now() - t0) / 1000) };
}

export const fmt = (ms) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(1));

/** The control plane's billed units so far (GET /metrics, wasmvisor_runtime_usage_total; docs/cost.md). */
export async function usageNow(url) {
  const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
  const out = {};
  for (const m of text.matchAll(/^wasmvisor_runtime_usage_total\{what="(\w+)"\} (\d+(?:\.\d+)?)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/** Per-job units between two `usageNow` readings. */
export const usagePerJob = (before, after, jobs) => Object.fromEntries(Object.keys(after).map((k) => [k, (after[k] - (before[k] ?? 0)) / jobs]));

/** CPU seconds (user + system) so far of this process's descendants named `name` (our own workerd, not another run's). */
export function cpuSecondsOf(name, root = process.pid) {
  const procs = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      procs.push({ pid: Number(pid), ppid: Number(fields[1]), comm, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {}
  }
  const mine = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs) if (!mine.has(p.pid) && mine.has(p.ppid)) mine.add(p.pid), (grew = true);
  }
  return procs.filter((p) => mine.has(p.pid) && p.comm === name).reduce((a, p) => a + p.ticks, 0) / 100;
}

/**
 * Deploys fibo.wasm as the signed deployment "bench" on `deviceId` (an orchestrator key trusted for
 * it) and answers a function calling fibo(20) through its endpoint by parameter name, waiting for
 * the result in the same request (bench row 2b).
 */
export async function deployFibo(cp, fibo, deviceId) {
  const { generateSigningKey, signDeployment } = await import("../dist/sdk/index.js");
  const signing = await generateSigningKey("EdDSA");
  await cp.admin.trustOrchestratorKey(signing.publicJwk, "bench");
  await cp.admin.deploy(await signDeployment(signing.privateJwk, {
    id: "bench",
    modules: [{ name: "fibo", digest: fibo, devices: [deviceId], functions: { fibo: { params: [{ name: "n", type: "integer" }], result: "integer" } } }],
  }));
  if ((await cp.admin.waitForDeployment("bench", { timeoutSeconds: 30 })).state !== "active") throw new Error("the bench deployment did not become active");
  return async () => {
    const j = await (await fetch(`${cp.url}/v1/deployments/bench/modules/fibo/fibo?n=20`, { method: "POST", headers: { authorization: `Bearer ${ADMIN}`, prefer: "wait=30" } })).json();
    if (j.result?.value !== 10946) throw new Error(`bad result ${JSON.stringify(j)}`);
  };
}
