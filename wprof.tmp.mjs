import WebSocket from "ws";
import { readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WasmvisorClient } from "./dist/sdk/index.js";
import { startAgent } from "./bench/lib.mjs";
process.env.CI = "true"; process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
const { unstable_startWorker } = await import("wrangler");
const ADMIN = "bench-admin-token-0123456789";
const worker = await unstable_startWorker({ config: "wrangler.toml", bindings: { ADMIN_TOKEN: { type: "plain_text", value: ADMIN } },
  dev: { server: { hostname: "127.0.0.1", port: 0 }, persist: mkdtempSync(join(tmpdir(), "wp-")), inspector: { port: 9339 }, logLevel: "none", watch: false } });
const url = (await worker.url).toString().replace(/\/$/, "");
const admin = new WasmvisorClient({ server: url, token: ADMIN });
const agent = await startAgent(url, (await admin.createKey("register")).key);
const fibo = (await admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"))).digest;
const H = { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" };
const body = JSON.stringify({ device: agent.deviceId, module: fibo, function: "fibo", args: [20] });
const run = async () => (await fetch(`${url}/v1/jobs?wait=30`, { method: "POST", headers: H, body })).arrayBuffer();
async function conc(n, total, fn) { let next = 0; await Promise.all(Array.from({ length: n }, async () => { while (next++ < total) await fn(); })); }
await conc(16, 300, run);
const targets = await (await fetch("http://127.0.0.1:9339/json")).json();
console.log(targets.map((t) => t.title).join(" | "));
const profiles = [];
for (const t of targets) {
  const ws = new WebSocket(t.webSocketDebuggerUrl);
  await new Promise((r) => ws.on("open", r));
  let id = 0; const pending = new Map();
  ws.on("message", (d) => { const m = JSON.parse(String(d)); if (m.id && pending.has(m.id)) { pending.get(m.id)(m.result); pending.delete(m.id); } });
  const send = (method, params = {}) => new Promise((r) => { const i = ++id; pending.set(i, r); ws.send(JSON.stringify({ id: i, method, params })); });
  await send("Profiler.enable"); await send("Profiler.setSamplingInterval", { interval: 100 }); await send("Profiler.start");
  profiles.push({ t, ws, send });
}
await conc(16, 2000, run);
for (const p of profiles) {
  const { profile } = await p.send("Profiler.stop");
  const self = new Map(); const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const counts = new Map(); for (const s of profile.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
  let total = 0;
  for (const [nid, c] of counts) { const n = byId.get(nid); const f = n.callFrame; const k = `${f.functionName || "(anon)"} ${f.url.split("/").slice(-2).join("/")}:${f.lineNumber}`; self.set(k, (self.get(k) ?? 0) + c); total += c; }
  console.log(`\n== ${p.t.title}: ${total} samples`);
  for (const [k, c] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 22)) console.log(`${((100 * c) / total).toFixed(1).padStart(5)}%  ${k}`);
  p.ws.close();
}
agent.stop(); await worker.dispose(); process.exit(0);
