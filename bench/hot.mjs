// Issue 14's A/B of the hot path: this checkout ("after") against BASE ("before", a commit
// extracted to a temp dir with `git archive` and built there), both control planes up at once,
// every scenario interleaved between them in the same run so drift on the shared machine cancels:
//   - floor (GET /healthz) and call latency (POST /v1/jobs?wait, fibo(20)) with each side's real agent;
//   - the same calls with an instant simulated agent (the control plane alone);
//   - bulk: BULK jobs in batches of 1,000 through each side's real agent (--prefetch 256), and
//     through an instant simulated agent (credit 256): the ceiling the real agent is held to.
// Usage: npm run build && nice -n 10 node bench/hot.mjs [BASE=main]   (knobs: CALLS, BULK, ROUNDS, SIDES=before,after)
import { execSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, symlinkSync } from "node:fs";
import { tmpdir, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { ADMIN, fmt, startControlPlane, stats } from "./lib.mjs";
import { fleet } from "./sim-fleet.mjs";

const CALLS = Number(process.env.CALLS ?? 300);
const BULK = Number(process.env.BULK ?? 3000);
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const BASE = process.argv[2] ?? process.env.BASE ?? "main";
const H = { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" };
const say = (m) => process.stderr.write(`${new Date().toISOString()} [load ${loadavg()[0].toFixed(2)}] ${m}\n`);
const fibo = readFileSync("examples/wasm/fibo.wasm");

function baseCheckout() {
  const dir = process.env.BASE_DIR ?? mkdtempSync(join(tmpdir(), "wv-base-"));
  if (!existsSync(join(dir, "dist"))) {
    execSync(`git archive ${BASE} | tar -x -C ${dir}`);
    symlinkSync(resolve("node_modules"), join(dir, "node_modules"));
    execSync("npm run build", { cwd: dir, stdio: "ignore" });
  }
  return dir;
}

async function startAgentFrom(root, url, token, extra = []) {
  const dataDir = mkdtempSync(join(tmpdir(), "wv-bench-agent-"));
  const proc = spawn(process.execPath, [join(root, "dist/device-agent/cli.js"), "agent", "--server", url, "--token", token, "--data-dir", dataDir, ...extra], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise((res, rej) => {
    createInterface({ input: proc.stdout }).on("line", (line) => {
      if (line.includes('"agent started"')) res();
    });
    proc.on("exit", (code) => rej(new Error(`agent exited ${code}`)));
  });
  const deviceId = JSON.parse(readFileSync(join(dataDir, "credential.json"), "utf8")).deviceId;
  return { proc, deviceId, stop: () => proc.kill("SIGTERM") };
}

/** Pids of the workerd processes running now. */
function workerdPids() {
  return readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
    try { return readFileSync(`/proc/${p}/status`, "utf8").match(/^Name:\s+(\S+)/m)?.[1] === "workerd"; } catch { return false; }
  });
}
/** CPU ms (user + system) used so far by these processes. */
function cpuMs(pids) {
  let ticks = 0;
  for (const p of pids) {
    try { const f = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1].split(" "); ticks += Number(f[11]) + Number(f[12]); } catch {}
  }
  return ticks * 10; // USER_HZ = 100
}

async function side(name, root) {
  const before = new Set(workerdPids());
  const cp = await startControlPlane(join(root, "wrangler.toml"));
  const workerd = workerdPids().filter((p) => !before.has(p));
  const registerKey = (await cp.admin.createKey("register", "bench")).key;
  const digest = (await cp.admin.uploadModule(fibo)).digest;
  const agent = await startAgentFrom(root, cp.url, registerKey, ["--transport", "ws"]);
  const bulkAgent = await startAgentFrom(root, cp.url, registerKey, ["--transport", "ws", "--prefetch", "256"]);
  const sim = await fleet(cp, registerKey, 2, 256);
  return { name, cp, digest, agent, bulkAgent, sim, workerd, floor: [], call: [], simCall: [], bulk: [], simBulk: [], cpu: { calls: 0, callMs: 0, bulkJobs: 0, bulkMs: 0, agentBulkMs: 0 } };
}

const job = (s, device) => JSON.stringify({ device, module: s.digest, function: "fibo", args: [20] });
async function callOnce(s, device) {
  const t = performance.now();
  const j = await (await fetch(`${s.cp.url}/v1/jobs?wait=30`, { method: "POST", headers: H, body: job(s, device) })).json();
  if (j.result?.value !== 10946) throw new Error(`bad result ${JSON.stringify(j)}`);
  return performance.now() - t;
}
async function floorOnce(s) {
  const t = performance.now();
  await (await fetch(`${s.cp.url}/healthz`)).arrayBuffer();
  return performance.now() - t;
}
async function bulk(s, device) {
  const batch = JSON.stringify({ jobs: Array.from({ length: 1000 }, () => ({ device, module: s.digest, function: "fibo", args: [20] })) });
  const t0 = performance.now();
  for (let i = 0; i < BULK; i += 1000) {
    const r = await fetch(`${s.cp.url}/v1/jobs/batch`, { method: "POST", headers: H, body: batch });
    if (r.status !== 202) throw new Error(`batch: ${r.status}`);
  }
  for (;;) {
    const d = await s.cp.admin.getDevice(device);
    if (d.queue.queued + d.queue.running === 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return BULK / ((performance.now() - t0) / 1000);
}

const which = (process.env.SIDES ?? "before,after").split(",");
const sides = [];
if (which.includes("before")) sides.push(await side("before", baseCheckout()));
if (which.includes("after")) sides.push(await side("after", "."));
say("warm-up");
for (const s of sides) for (let i = 0; i < 50; i++) { await callOnce(s, s.agent.deviceId); await callOnce(s, s.sim.devices[0].deviceId); }
for (let r = 0; r < ROUNDS; r++) {
  say(`round ${r + 1}/${ROUNDS}: latency`);
  for (let i = 0; i < CALLS / ROUNDS; i++) {
    for (const s of sides) {
      s.floor.push(await floorOnce(s));
      s.call.push(await callOnce(s, s.agent.deviceId));
      s.simCall.push(await callOnce(s, s.sim.devices[0].deviceId));
    }
  }
  say(`round ${r + 1}/${ROUNDS}: CPU per call`);
  for (const s of sides) {
    const c0 = cpuMs(s.workerd);
    for (let i = 0; i < 100; i++) await callOnce(s, s.agent.deviceId);
    s.cpu.callMs += cpuMs(s.workerd) - c0;
    s.cpu.calls += 100;
  }
  say(`round ${r + 1}/${ROUNDS}: bulk`);
  for (const s of sides) {
    const c0 = cpuMs(s.workerd), a0 = cpuMs([String(s.bulkAgent.proc.pid)]);
    s.bulk.push(await bulk(s, s.bulkAgent.deviceId));
    s.cpu.bulkMs += cpuMs(s.workerd) - c0;
    s.cpu.agentBulkMs += cpuMs([String(s.bulkAgent.proc.pid)]) - a0;
    s.cpu.bulkJobs += BULK;
    s.simBulk.push(await bulk(s, s.sim.devices[1].deviceId));
  }
}
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
console.log(`\nload average at the end: ${loadavg().map((x) => x.toFixed(2)).join(", ")}`);
console.log("| side | floor p50 / p99 | call (real agent) p50 / p99 (ratio to floor) | call (instant agent) p50 / p99 | bulk real agent | bulk instant agent | real / instant |");
console.log("|---|---|---|---|---|---|---|");
for (const s of sides) {
  const f = stats(s.floor), c = stats(s.call), sc = stats(s.simCall);
  console.log(`| ${s.name}${s.name === "before" ? ` (${BASE})` : ""} | ${fmt(f.p50)} / ${fmt(f.p99)} ms | ${fmt(c.p50)} / ${fmt(c.p99)} ms (${(c.p50 / f.p50).toFixed(2)}x / ${(c.p99 / f.p99).toFixed(2)}x) | ${fmt(sc.p50)} / ${fmt(sc.p99)} ms (${(sc.p50 / f.p50).toFixed(2)}x / ${(sc.p99 / f.p99).toFixed(2)}x) | ${mean(s.bulk).toFixed(0)} jobs/s (${s.bulk.map((x) => x.toFixed(0)).join(", ")}) | ${mean(s.simBulk).toFixed(0)} jobs/s (${s.simBulk.map((x) => x.toFixed(0)).join(", ")}) | ${(mean(s.bulk) / mean(s.simBulk)).toFixed(2)}x |`);
}
console.log("\n| side | workerd CPU per call (create and wait, real agent) | workerd CPU per bulk job | agent CPU per bulk job (main thread + threads) |");
console.log("|---|---|---|---|");
for (const s of sides) console.log(`| ${s.name} | ${(s.cpu.callMs / s.cpu.calls).toFixed(2)} ms | ${(s.cpu.bulkMs / s.cpu.bulkJobs).toFixed(3)} ms | ${(s.cpu.agentBulkMs / s.cpu.bulkJobs).toFixed(3)} ms |`);
for (const s of sides) { s.agent.stop(); s.bulkAgent.stop(); s.sim.close(); await s.cp.stop(); }
process.exit(0);
