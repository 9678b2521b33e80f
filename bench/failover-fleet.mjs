// Measures (issue 12): the time from a device's last heartbeat to the failover of its job, on a fleet
// of 1,000 simulated devices where a few of them go offline at once. bench/rollout-fleet.mjs's failover
// step ran after a 1,000-device rollout on an overloaded runtime and timed out; here the fleet is
// connected, the runtime is let settle (the devices that send no heartbeats go offline: one alarm each),
// and only then do K devices holding jobs with `failover: {onOffline: "move"}` fall silent together.
// Run once, niced: `npm run build && nice -n 10 node bench/failover-fleet.mjs [devices] [silenced]`.
import { readFileSync } from "node:fs";
import { ADMIN, startControlPlane } from "./lib.mjs";
import { fleet } from "./sim-fleet.mjs";

const N = Number(process.argv[2] ?? 1000);
const K = Number(process.argv[3] ?? 5);
const H = 20; // devices that send heartbeats (the standby pool); 1,000 every 5 s would be 200 requests/s on 2 shared cores
const afterMs = 15_000; // longer than the heartbeat interval, or the policy would fire between two heartbeats
const log = (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);
const cp = await startControlPlane();
const api = async (method, path, body) => {
  for (let attempt = 0; ; attempt++) {
    const r = await fetch(`${cp.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) }, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(60_000) }).catch((e) => ({ status: 599, text: async () => String(e) }));
    const text = await r.text();
    if (r.status >= 500 && attempt < 5) { await new Promise((res) => setTimeout(res, 500 * 2 ** attempt)); continue; } // a loaded local runtime
    return { status: r.status, body: text && r.status !== 599 ? JSON.parse(text) : text };
  }
};
try {
  const register = (await api("POST", "/v1/keys", { role: "register" })).body.key;
  const up = await fetch(`${cp.url}/v1/modules`, { method: "POST", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/wasm" }, body: readFileSync("examples/wasm/fibo.wasm") });
  const digest = (await up.json()).digest;
  const description = { platform: { memory: { bytes: 1 << 30 }, cpu: { humanReadableName: "sim", clockSpeed: { Hz: 1e9 }, arch: "x64" } }, supervisorInterfaces: [], capabilities: { cameras: [], sensors: [], labels: { fleet: "sim" } } };
  const t0 = Date.now();
  const sim = await fleet(cp, register, N, 1, { description, progress: log });
  // The pool's heartbeats go over HTTP (POST /v1/agent/heartbeat), as an agent without an open socket
  // sends them: they do not depend on sockets the loaded runtime may have dropped while the rest connected.
  const HEALTH = { cpuPercent: 1, memoryUsedBytes: 1, memoryTotalBytes: 2, loadAverage: [0, 0, 0], uptimeSeconds: 1, diskFreeBytes: 1, jobsRunning: 0 };
  const pool = sim.devices.slice(0, H);
  const silenced = new Set();
  const lastBeat = new Map();
  let beatFailures = 0;
  const beatAll = () => Promise.all(pool.filter((d) => !silenced.has(d.deviceId)).map(async (d) => {
    const r = await fetch(`${cp.url}/v1/agent/heartbeat`, { method: "POST", headers: { authorization: `Bearer ${d.credential}`, "content-type": "application/json" }, body: JSON.stringify({ health: HEALTH }), signal: AbortSignal.timeout(20_000) }).catch(() => null);
    if (r?.ok) lastBeat.set(d.deviceId, Date.now());
    else beatFailures++;
    await r?.body?.cancel();
  }));
  await beatAll();
  const beats = setInterval(() => void beatAll(), 5_000);
  console.log(`${N} simulated devices registered and connected in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${H} of them send heartbeats every 5 s`);

  // Let the runtime settle: the devices without heartbeats go offline (each its own alarm) before anything is measured.
  const settle = Date.now();
  let online = Infinity;
  while (Date.now() - settle < 240_000) {
    const page = await api("GET", "/v1/devices?status=online&limit=100");
    online = page.status === 200 ? page.body.devices.length : Infinity;
    if (online <= H) break;
    await new Promise((r) => setTimeout(r, 2_000));
  }
  console.log(`settled: ${online} devices online, ${((Date.now() - settle) / 1000).toFixed(1)} s after the last connect`);

  for (const d of sim.devices.slice(0, H)) {
    const r = await api("PUT", `/v1/devices/${d.deviceId}/labels`, { labels: { fleet: "sim", pool: "standby" } });
    if (r.status !== 200) throw new Error(`labels: ${r.status} ${JSON.stringify(r.body)}`);
  }
  // K jobs, not started (so none runs before its device falls silent), one per device: each holder is
  // drained while the next job is placed (placement skips drained devices), then all are resumed.
  const jobs = [];
  for (let i = 0; i < K; i++) {
    const job = await api("POST", "/v1/jobs", { selector: { labels: { pool: "standby" } }, module: digest, function: "fibo", args: [10], start: false, failover: { onOffline: "move", afterMs } });
    if (job.status !== 202) throw new Error(JSON.stringify(job.body));
    jobs.push(job.body);
    await api("POST", `/v1/devices/${job.body.device}/drain`);
  }
  for (const j of jobs) await api("POST", `/v1/devices/${j.device}/resume`);
  const holders = [...new Set(jobs.map((j) => j.device))];
  // Fall silent right after a heartbeat went out, all K together, so each silence starts at that heartbeat.
  const before = lastBeat.get(holders[0]);
  while (lastBeat.get(holders[0]) === before) await new Promise((r) => setTimeout(r, 5));
  const silencedAt = Date.now();
  for (const d of holders) silenced.add(d);
  console.log(`${holders.length} devices holding ${K} jobs with failover {onOffline: move, afterMs: ${afterMs}} fell silent together`);

  const rows = [];
  for (const job of jobs) {
    let v;
    for (;;) {
      v = (await api("GET", `/v1/jobs/${job.id}`)).body;
      if (v.failover?.movedTo) break;
      if (Date.now() - silencedAt > 180_000) throw new Error(`no failover of ${job.id} after 180 s: ${JSON.stringify(v.failover)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const seen = Date.now();
    const lastSeen = Date.parse((await api("GET", `/v1/devices/${job.device}`)).body.lastSeenAt);
    const moved = (await api("GET", `/v1/jobs/${v.failover.movedTo}`)).body;
    rows.push({ job: job.id, from: job.device, fired: Date.parse(v.failover.firedAt) - lastSeen, visible: seen - lastSeen, to: moved.device, state: v.state });
  }
  for (const r of rows) console.log(`  ${r.job.slice(0, 12)}… on ${r.from.slice(0, 8)}…: last heartbeat recorded -> policy fired ${r.fired} ms, -> moved job visible ${r.visible} ms (old job ${r.state}, new job on ${r.to.slice(0, 8)}…)`);
  const fired = rows.map((r) => r.fired).sort((a, b) => a - b);
  const visible = rows.map((r) => r.visible).sort((a, b) => a - b);
  const unmoved = rows.filter((r) => holders.includes(r.to)).length;
  console.log(`failover at ${N} simulated devices (afterMs ${afterMs}, ${K} jobs on ${holders.length} silent devices): last heartbeat -> policy fired min ${fired[0]} / max ${fired.at(-1)} ms; -> moved job visible to a polling client (polled one after another) min ${visible[0]} / max ${visible.at(-1)} ms; moved onto a silent device: ${unmoved}`);
  console.log(`heartbeats that failed or timed out (loaded runtime): ${beatFailures}`);
  clearInterval(beats);
  sim.close();
} finally {
  await cp.stop();
}
