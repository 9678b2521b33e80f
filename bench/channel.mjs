#!/usr/bin/env node
// The streaming submission channel alone, for A/B work with small counts (npm run build first):
// starts the control plane and one real agent once, then measures, in this one run, the floor
// at 16 concurrent requests, 16 submitters over REST (one request per job), and 16 submitters
// over the channel (one WebSocket shared by all, as BullMQ's submitters share one connection).
//   node bench/channel.mjs [jobs]
import { readFileSync } from "node:fs";
import { ADMIN, concurrent, cpuSecondsOf, deployFibo, fmt, startAgent, startControlPlane, usageNow, usagePerJob } from "./lib.mjs";


/**
 * Runs `total` jobs through `run` and answers its throughput plus what each job cost the
 * control plane: billed units (GET /metrics) and CPU ms of our workerd processes.
 */
export async function measured(cp, total, run) {
  const before = await usageNow(cp.url);
  const cpu0 = cpuSecondsOf("workerd");
  const out = await run();
  const cpuMsPerJob = ((cpuSecondsOf("workerd") - cpu0) * 1000) / total;
  const after = await usageNow(cp.url);
  return { ...out, perJob: { ...usagePerJob(before, after, total), workerdCpuMs: cpuMsPerJob } };
}

export const perJobText = (p) => Object.entries(p).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ");

/** A channel warmed with 100 jobs, and one job over it (checked); close it with `ch.close()`. */
export async function warmChannel(cp, job) {
  const ch = await cp.admin.channel();
  const one = async () => {
    const { done, job: j } = await ch.submit(job, { waitSeconds: 30 });
    if (!done || j.result?.value !== 10946) throw new Error(`bad result ${JSON.stringify(j)}`);
  };
  for (let i = 0; i < 100; i++) await one();
  return { ch, one };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const JOBS = Number(process.argv[2] ?? 1000);
  const H = { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" };
  const cp = await startControlPlane();
  const registerKey = (await cp.admin.createKey("register", "bench")).key;
  const agent = await startAgent(cp.url, registerKey, ["--transport", "ws"]);
  const fibo = (await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"))).digest;
  const job = { device: agent.deviceId, module: fibo, function: "fibo", args: [20] };
  const body = JSON.stringify(job);
  const healthz = async () => (await fetch(`${cp.url}/healthz`)).arrayBuffer();
  const rest = async () => {
    const j = await (await fetch(`${cp.url}/v1/jobs?wait=30`, { method: "POST", headers: H, body })).json();
    if (j.result?.value !== 10946) throw new Error(`bad result ${JSON.stringify(j)}`);
  };
  for (let i = 0; i < 100; i++) await rest();
  const rows = [];
  for (let round = 0; round < 2; round++) {
    const floor = await concurrent(16, JOBS, healthz);
    const r = await measured(cp, JOBS, () => concurrent(16, JOBS, rest));
    const { ch, one } = await warmChannel(cp, job);
    const c = await measured(cp, JOBS, () => concurrent(16, JOBS, one));
    ch.close();
    rows.push(`  REST per job: ${perJobText(r.perJob)}\n  channel per job: ${perJobText(c.perJob)}`);
    rows.push(`floor ${floor.perSecond.toFixed(0)} req/s | REST ${r.perSecond.toFixed(0)} jobs/s (p50 ${fmt(r.p50)} ms, ${(r.perSecond / floor.perSecond).toFixed(2)}x floor) | channel ${c.perSecond.toFixed(0)} jobs/s (p50 ${fmt(c.p50)} ms, ${(c.perSecond / floor.perSecond).toFixed(2)}x floor, ${(c.perSecond / r.perSecond).toFixed(2)}x REST)`);
  }
  // A direct call of a deployed function (wasmiot style: parameters by name), sequential, for docs/cost.md.
  const callDeployed = await deployFibo(cp, fibo, agent.deviceId);
  for (let i = 0; i < 50; i++) await callDeployed();
  const calls = Math.min(JOBS, 500);
  const d = await measured(cp, calls, async () => {
    for (let i = 0; i < calls; i++) await callDeployed();
  });
  rows.push(`  deployment call (sequential) per job: ${perJobText(d.perJob)}`);
  console.log(rows.join("\n"));
  agent.stop();
  await cp.stop();
  process.exit(0);
}
