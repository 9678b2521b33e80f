// The operator's view, measured (docs/observability.md):
// 1. GET /metrics at 1,000 simulated devices (bench/sim-fleet.mjs), each with one finished job
//    and one service (STARTING: simulated agents run none), and one rollout: scrape time and size.
// 2. The cost per job of the new bookkeeping (metric counts in the index, audit records,
//    trace ids): the same job rounds against this checkout and against BASE (a commit before
//    it, extracted to a temp dir with `git archive`), interleaved, in the same run.
// Usage: npm run build && nice -n 10 node bench/observability.mjs [BASE=6e9e9a3]
import { execSync } from "node:child_process";
import { mkdtempSync, readFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { ADMIN, fmt, startControlPlane, stats } from "./lib.mjs";
import { fleet } from "./sim-fleet.mjs";

const DEVICES = Number(process.env.DEVICES ?? 1000);
const SCRAPES = Number(process.env.SCRAPES ?? 20);
const SERVICES = process.env.SERVICES !== "0";
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SEQUENTIAL = Number(process.env.SEQUENTIAL ?? 150);
const BULK = Number(process.env.BULK ?? 5000);
const BASE = process.argv[2] ?? process.env.BASE ?? "6e9e9a3";
const H = { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" };
const say = (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);
const fibo = readFileSync("examples/wasm/fibo.wasm");

async function setUp(cp) {
  const registerKey = (await cp.admin.createKey("register", "bench")).key;
  const digest = (await cp.admin.uploadModule(fibo)).digest;
  return { registerKey, digest };
}

// ---- 1. scrape at DEVICES devices ----
say(`scrape at ${DEVICES} devices`);
const cp = await startControlPlane();
const { registerKey, digest } = await setUp(cp);
const f = await fleet(cp, registerKey, DEVICES);
const jobs = f.devices.map((d) => ({ device: d.deviceId, module: digest, function: "fibo", args: [20] }));
for (let i = 0; i < jobs.length; i += 1000) {
  const r = await fetch(`${cp.url}/v1/jobs/batch`, { method: "POST", headers: H, body: JSON.stringify({ jobs: jobs.slice(i, i + 1000) }) });
  if (r.status !== 202) throw new Error(`batch: ${r.status} ${await r.text()}`);
}
say("fleet registered and connected; jobs submitted");
await f.finished;
say("every job reported");
const value = (families, name, labels = {}) => Number(families.find((x) => x.name === name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value);
let families;
for (let i = 0; i < 200; i++) {
  families = parsePrometheusTextFormat(await (await fetch(`${cp.url}/metrics`, { headers: H })).text());
  if (value(families, "wasmvisor_jobs", { state: "SUCCEEDED" }) === DEVICES && value(families, "wasmvisor_devices", { status: "online" }) === DEVICES) break;
  await new Promise((r) => setTimeout(r, 100));
}
say("metrics show the fleet");
if (SERVICES) {
  // one service per device (its tally goes to the device's listing shard), 16 requests at a time
  const counter = (await cp.admin.uploadModule(readFileSync("examples/wasm/counter.wasm"))).digest;
  const queue = [...f.devices];
  let restarts = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    for (let d = queue.shift(); d; d = queue.shift()) {
      // a 503 "worker restarted mid-request" (the local runtime under load) is tried again; 409: the first try had created it
      for (let attempt = 1; ; attempt++) {
        const r = await fetch(`${cp.url}/v1/devices/${d.deviceId}/services`, { method: "POST", headers: H, body: JSON.stringify({ name: "counter", module: counter }) });
        if (r.status === 201 || (r.status === 409 && attempt > 1)) break;
        const text = await r.text();
        if (r.status !== 503 || attempt >= 5) throw new Error(`service: ${r.status} ${text}`);
        restarts++;
      }
    }
  }));
  for (let i = 0; i < 300; i++) {
    families = parsePrometheusTextFormat(await (await fetch(`${cp.url}/metrics`, { headers: H })).text());
    if (value(families, "wasmvisor_services", { status: "STARTING" }) === DEVICES) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  say(`metrics show ${value(families, "wasmvisor_services", { status: "STARTING" })} services (${restarts} service requests answered 503 and tried again)`);
}
const times = [];
let bytes = 0;
let lines = 0;
for (let i = 0; i < SCRAPES; i++) {
  const t = performance.now();
  const text = await (await fetch(`${cp.url}/metrics`, { headers: H })).text();
  times.push(performance.now() - t);
  bytes = Buffer.byteLength(text);
  lines = text.split("\n").filter((l) => l && !l.startsWith("#")).length;
}
const s = stats(times);
console.log(`| GET /metrics at ${DEVICES} simulated devices (${value(families, "wasmvisor_devices", { status: "online" })} online, ${value(families, "wasmvisor_jobs", { state: "SUCCEEDED" })} jobs SUCCEEDED, ${value(families, "wasmvisor_services", { status: "STARTING" })} services), ${SCRAPES} scrapes | p50 ${fmt(s.p50)} ms, p99 ${fmt(s.p99)} ms | ${bytes} bytes, ${lines} samples |`);
f.close();
await cp.stop();
if (process.env.SCRAPE_ONLY === "1") process.exit(0);

// ---- 2. per-job cost, this checkout (after) vs BASE (before), same run ----
const baseDir = mkdtempSync(join(tmpdir(), "wv-base-"));
execSync(`git archive ${BASE} | tar -x -C ${baseDir}`);
symlinkSync(resolve("node_modules"), join(baseDir, "node_modules"));
const sides = {};
for (const [name, config] of [["before", join(baseDir, "wrangler.toml")], ["after", "wrangler.toml"]]) {
  const c = await startControlPlane(config);
  const setup = await setUp(c);
  const sim = await fleet(c, setup.registerKey, 1, 256);
  sides[name] = { cp: c, sim, device: sim.devices[0].deviceId, digest: setup.digest, seq: [], bulk: [] };
}
async function round(side) {
  const one = JSON.stringify({ device: side.device, module: side.digest, function: "fibo", args: [20] });
  for (let i = 0; i < SEQUENTIAL; i++) {
    const t = performance.now();
    const j = await (await fetch(`${side.cp.url}/v1/jobs?wait=30`, { method: "POST", headers: H, body: one })).json();
    side.seq.push(performance.now() - t);
    if (j.result?.value !== 10946) throw new Error(`bad result ${JSON.stringify(j)}`);
  }
  const batch = JSON.stringify({ jobs: Array.from({ length: 1000 }, () => ({ device: side.device, module: side.digest, function: "fibo", args: [20] })) });
  const t0 = performance.now();
  for (let i = 0; i < BULK; i += 1000) {
    const r = await fetch(`${side.cp.url}/v1/jobs/batch`, { method: "POST", headers: H, body: batch });
    if (r.status !== 202) throw new Error(`batch: ${r.status}`);
  }
  for (;;) {
    const d = await side.cp.admin.getDevice(side.device);
    if (d.queue.queued + d.queue.running === 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  side.bulk.push(BULK / ((performance.now() - t0) / 1000));
}
for (let r = 0; r < ROUNDS; r++) {
  say(`round ${r + 1}/${ROUNDS}`);
  await round(sides.before);
  await round(sides.after);
}
for (const name of ["before", "after"]) {
  const side = sides[name];
  const q = stats(side.seq.slice(SEQUENTIAL)); // the first round warms up
  const bulk = side.bulk.slice(1);
  const mean = bulk.reduce((a, b) => a + b, 0) / bulk.length;
  console.log(`| ${name} (${name === "before" ? BASE : "this checkout"}): POST /v1/jobs?wait=30, instant simulated agent, ${q.n ?? side.seq.length - SEQUENTIAL} sequential | p50 ${fmt(q.p50)} ms, p99 ${fmt(q.p99)} ms | bulk ${BULK} jobs in batches of 1,000: ${mean.toFixed(0)} jobs/s (rounds: ${bulk.map((b) => b.toFixed(0)).join(", ")}) |`);
  side.sim.close();
  await side.cp.stop();
}
process.exit(0);
