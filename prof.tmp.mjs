import { readFileSync, readdirSync } from "node:fs";
import { ADMIN, startControlPlane, startAgent } from "./bench/lib.mjs";
const ticks = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" "); return (Number(f[11]) + Number(f[12])) / 100; };
const byName = () => { const out = {}; for (const p of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) { try { const n = readFileSync(`/proc/${p}/comm`, "utf8").trim(); if (["workerd", "node"].includes(n)) out[p] = { n, t: ticks(p), cmd: readFileSync(`/proc/${p}/cmdline`, "utf8").replace(/\0/g, " ").slice(0, 60) }; } catch {} } return out; };
const cp = await startControlPlane();
const key = (await cp.admin.createKey("register")).key;
const agent = await startAgent(cp.url, key);
const fibo = (await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"))).digest;
const H = { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" };
const body = JSON.stringify({ device: agent.deviceId, module: fibo, function: "fibo", args: [20] });
const run = async () => (await fetch(`${cp.url}/v1/jobs?wait=30`, { method: "POST", headers: H, body })).arrayBuffer();
const health = async () => (await fetch(`${cp.url}/healthz`)).arrayBuffer();
async function conc(n, total, fn) { let next = 0; const t0 = performance.now(); await Promise.all(Array.from({ length: n }, async () => { while (next++ < total) await fn(); })); return (performance.now() - t0) / 1000; }
await conc(16, 500, run);
for (const [label, fn] of [["healthz", health], ["jobs", run]]) {
  const before = byName();
  const wall = await conc(16, 3000, fn);
  const after = byName();
  console.log(`${label}: ${(3000 / wall).toFixed(0)}/s over ${wall.toFixed(2)} s wall`);
  for (const [pid, a] of Object.entries(after)) { const b = before[pid]; if (!b) continue; const d = a.t - b.t; if (d > 0.05) console.log(`   ${a.n.padEnd(8)} ${pid === String(process.pid) ? "(bench+wrangler)" : pid === String(agent.proc.pid) ? "(agent)" : ""} cpu ${d.toFixed(2)} s = ${(1000 * d / 3000).toFixed(2)} ms/request  ${a.cmd}`); }
}
agent.stop(); await cp.stop(); process.exit(0);
