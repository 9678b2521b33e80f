#!/usr/bin/env node
// npm run bench: runs the scenarios and prints a markdown table; writes bench/results/<timestamp>.json.
// Not part of npm test: timings on a shared 2-core machine are for ratios within one run, not assertions.
import { writeFileSync, readFileSync } from "node:fs";
import os from "node:os";
import { ADMIN, fmt, startAgent, startControlPlane, stats, timeSequential } from "./lib.mjs";

const CALLS = Number(process.env.BENCH_CALLS ?? 1000);
const TRANSPORT = process.env.BENCH_TRANSPORT ?? "ws";
const cp = await startControlPlane();
const key = await cp.admin.createKey("register", "bench");
const agent = await startAgent(cp.url, key.key, ["--transport", TRANSPORT]);
const fibo = (await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"))).digest;
const H = { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" };
const body = JSON.stringify({ device: agent.deviceId, module: fibo, function: "fibo", args: [20] });

async function healthz() {
  const r = await fetch(`${cp.url}/healthz`);
  await r.arrayBuffer();
}
async function runOneRequest() {
  const r = await fetch(`${cp.url}/v1/jobs?wait=30`, { method: "POST", headers: H, body });
  const job = await r.json();
  if (job.result?.value !== 10946) throw new Error(`bad result ${JSON.stringify(job)}`);
}
async function runTwoRequests() {
  const job = await (await fetch(`${cp.url}/v1/jobs`, { method: "POST", headers: H, body })).json();
  const done = await (await fetch(`${cp.url}${job.links.result}?wait=30`, { headers: H })).json();
  if (done.result?.value !== 10946) throw new Error(`bad result ${JSON.stringify(done)}`);
}

// Warm up every path (JIT, module download and compile, SQLite pages).
await timeSequential(100, healthz);
await timeSequential(100, runOneRequest);
await timeSequential(50, runTwoRequests);

// Interleaved: each call is measured next to a floor request, so drift on a shared machine cancels out.
const samples = { floor: [], one: [], two: [] };
for (let i = 0; i < CALLS; i++) {
  samples.floor.push(...(await timeSequential(1, healthz)));
  samples.one.push(...(await timeSequential(1, runOneRequest)));
  samples.two.push(...(await timeSequential(1, runTwoRequests)));
}
const floor = stats(samples.floor);
const oneReq = stats(samples.one);
const twoReq = stats(samples.two);

agent.stop();
await cp.stop();

const rows = [
  ["Floor: GET /healthz", floor],
  ["fibo(20): POST /v1/jobs?wait (create and wait, 1 request)", oneReq],
  ["fibo(20): POST /v1/jobs, then GET result?wait (2 requests)", twoReq],
];
const table = [
  `| scenario (${TRANSPORT} transport, ${CALLS} sequential calls, interleaved) | p50 ms | p99 ms | p50 / floor | p99 / floor |`,
  "|---|---:|---:|---:|---:|",
  ...rows.map(([name, s]) => `| ${name} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${(s.p50 / floor.p50).toFixed(2)}x | ${(s.p99 / floor.p99).toFixed(2)}x |`),
].join("\n");
console.log(`\n${table}\n`);

const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.type()} ${os.release()}` };
const file = `bench/results/${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
writeFileSync(file, JSON.stringify({ machine, calls: CALLS, results: Object.fromEntries(rows.map(([n, s]) => [n, s])) }, null, 2));
console.log(`wrote ${file}`);
process.exit(0);
