#!/usr/bin/env node
// Services on one agent (docs/services.md, "Measured"): the agent's RSS per running service and
// each service process's RSS, the CPU a STOPPED service uses over 10 s, the time from a crash
// to the restart (the agent noticing and spawning, and until the Wasm runs again), and how
// the machine holds many services. Run after `npm run build`: `nice node bench/services.mjs`.
// Not part of npm test.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { startControlPlane, stats } from "./lib.mjs";

const STEPS = (process.env.BENCH_SERVICE_STEPS ?? "1,20,40,60").split(",").map(Number);
const CRASHES = Number(process.env.BENCH_CRASHES ?? 20);
const say = (m) => process.stderr.write(`[services] ${m}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mb = (kb) => (kb / 1024).toFixed(1);

const rssKb = (pid) => Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+)/m)?.[1] ?? 0);
function stat(pid) {
  const t = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = t.slice(t.lastIndexOf(")") + 2).split(" ");
  return { state: f[0], ticks: Number(f[11]) + Number(f[12]) };
}
const cpuTicksTotal = () => readFileSync("/proc/stat", "utf8").split("\n")[0].split(/\s+/).slice(1, 8).reduce((a, b) => a + Number(b), 0);

const cp = await startControlPlane();
const register = (await cp.admin.createKey("register", "bench-services")).key;
const counter = (await cp.admin.uploadModule(readFileSync("examples/wasm/counter.wasm"))).digest;
// examples/wasm/crasher.wasm is test/helpers/wat.ts's `crasher`: prints "up", sleeps 300 ms, exits with code 3.
const crasherBytes = readFileSync("examples/wasm/crasher.wasm");

const dataDir = mkdtempSync(join(tmpdir(), "wv-bench-services-"));
const agent = spawn(process.execPath, ["dist/device-agent/cli.js", "agent", "--server", cp.url, "--token", register, "--data-dir", dataDir, "--heartbeat-interval", "1"], { stdio: ["ignore", "pipe", "inherit"] });
const logs = [];
await new Promise((resolve, reject) => {
  createInterface({ input: agent.stdout }).on("line", (line) => {
    try {
      const l = JSON.parse(line);
      logs.push(l);
      if (l.msg === "agent started") resolve();
    } catch {}
  });
  agent.on("exit", (code) => reject(new Error(`agent exited ${code}`)));
});
const deviceId = JSON.parse(readFileSync(join(dataDir, "credential.json"), "utf8")).deviceId;
const out = {};

async function until(what, fn, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn().catch(() => null);
    if (v) return v;
    await sleep(250);
  }
  throw new Error(`${what}: timed out`);
}
const running = async (n) => (await cp.admin.listServices(deviceId)).filter((s) => s.status === "RUNNING" && s.pid).length >= n;

try {
  await sleep(3_000);
  const idleKb = rssKb(agent.pid);
  say(`agent idle RSS ${mb(idleKb)} MB`);

  // Many services: the agent's RSS, the services' RSS and the machine's CPU at each step.
  const table = [];
  let made = 0;
  for (const n of STEPS) {
    for (; made < n; made++) await cp.admin.createService(deviceId, { name: `c${made}`, module: counter });
    await until(`${n} running`, () => running(n));
    await sleep(5_000); // settle: startup is over, heartbeats carry them
    const list = await cp.admin.listServices(deviceId);
    const pids = list.filter((s) => s.pid).map((s) => s.pid);
    const agentKb = rssKb(agent.pid);
    const childKb = pids.reduce((a, p) => a + rssKb(p), 0);
    const c0 = pids.reduce((a, p) => a + stat(p).ticks, 0);
    const m0 = cpuTicksTotal();
    await sleep(5_000);
    const c1 = pids.reduce((a, p) => a + stat(p).ticks, 0);
    const m1 = cpuTicksTotal();
    const row = {
      services: n,
      running: list.filter((s) => s.status === "RUNNING").length,
      agentRssMb: Number(mb(agentKb)),
      agentRssPerServiceMb: Number(((agentKb - idleKb) / 1024 / n).toFixed(2)),
      serviceRssMbEach: Number((childKb / 1024 / pids.length).toFixed(1)),
      servicesCpuPercentOfMachine: Number((((c1 - c0) / (m1 - m0)) * 100).toFixed(2)),
    };
    table.push(row);
    say(JSON.stringify(row));
  }
  out.scale = table;

  // A STOPPED service over 10 s.
  await cp.admin.serviceAction(deviceId, "c0", "suspend");
  const stopped = await until("c0 STOPPED", async () => {
    const s = await cp.admin.getService(deviceId, "c0");
    return s.status === "STOPPED" ? s : null;
  });
  await until("frozen", async () => stat(stopped.pid).state === "T");
  const t0 = stat(stopped.pid).ticks;
  await sleep(10_000);
  const t1 = stat(stopped.pid).ticks;
  const reported = await cp.admin.getService(deviceId, "c0");
  out.stopped = { cpuTicksOver10s: t1 - t0, cpuMsOver10s: (t1 - t0) * 10, reportedCpuPercent: reported.cpuPercent, state: stat(stopped.pid).state };
  say(`STOPPED over 10 s: ${JSON.stringify(out.stopped)}`);
  await cp.admin.removeServices(deviceId, (await cp.admin.listServices(deviceId)).map((s) => s.name));
  await until("all removed", async () => !readdirSync(join(dataDir, "services")).some((d) => d.startsWith("c")));

  // Crash to restart: a module that exits with code 3 after 300 ms, restarted with no delay.
  if (crasherBytes) {
    const crasher = (await cp.admin.uploadModule(crasherBytes)).digest;
    await cp.admin.createService(deviceId, { name: "crash", module: crasher, restart: { mode: "on-failure", maxRestarts: CRASHES, windowMs: 600_000, initialDelayMs: 0, maxDelayMs: 0 } });
    await until("crash CRASHED", async () => (await cp.admin.getService(deviceId, "crash")).status === "CRASHED", 300_000);
    const starts = logs.filter((l) => l.msg === "service started" && l.service === "crash").map((l) => Date.parse(l.time));
    const ends = logs.filter((l) => l.msg === "service ended; restarting" && l.service === "crash").map((l) => Date.parse(l.time));
    const toSpawn = ends.map((e, i) => starts[i + 1] - e).filter((x) => Number.isFinite(x));
    // The Wasm running again: the next run's first line ("up"), as the service wrote it.
    const ups = readFileSync(join(dataDir, "services", "crash", "output.log"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l).at);
    const toRunning = ends.map((e, i) => ups[i + 1] - e).filter((x) => Number.isFinite(x));
    out.crashToRestart = { restarts: toSpawn.length, crashNoticedToProcessSpawnedMs: stats(toSpawn), crashNoticedToWasmRunningAgainMs: stats(toRunning) };
    say(`crash -> restarted: ${JSON.stringify(out.crashToRestart)}`);
  }
} finally {
  agent.kill("SIGKILL");
  // Services outlive the agent by design: end what is left.
  const root = join(dataDir, "services");
  for (const d of existsSync(root) ? readdirSync(root) : []) {
    try {
      const pid = JSON.parse(readFileSync(join(root, d, "state.json"), "utf8")).pid;
      if (pid) process.kill(-pid, "SIGKILL");
    } catch {}
  }
  await cp.stop();
}
process.stdout.write(JSON.stringify(out, null, 2) + "\n");
