// Measures (issue 12): how long a staged rollout takes to reach 95% of 1,000 simulated devices,
// and how long after a device's last heartbeat its job fails over to another device.
// Run once, niced: `npm run build && nice -n 10 node bench/rollout-fleet.mjs [devices]`.
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { readFileSync } from "node:fs";
import { ADMIN, startControlPlane } from "./lib.mjs";
import { fleet } from "./sim-fleet.mjs";

const N = Number(process.argv[2] ?? 1000);
const cp = await startControlPlane();
const api = async (method, path, body, token = ADMIN, type = "application/json") => {
  const r = await fetch(`${cp.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": type } : {}) }, body: body === undefined ? undefined : type === "application/json" ? JSON.stringify(body) : body, signal: AbortSignal.timeout(120_000) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
};
try {
  const register = (await api("POST", "/v1/keys", { role: "register" })).body.key;
  const pair = await generateKeyPair("EdDSA", { extractable: true });
  const kid = (await api("POST", "/v1/orchestrator-keys", { jwk: await exportJWK(pair.publicKey), label: "bench" })).body.kid;
  const up = await fetch(`${cp.url}/v1/modules`, { method: "POST", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/wasm" }, body: readFileSync("examples/wasm/fibo.wasm") });
  const digest = (await up.json()).digest;

  const applied = new Map(); // deviceId -> ms when it reported the rollout's version active
  let retries = 0;
  let t0 = 0;
  const description = { platform: { memory: { bytes: 1 << 30 }, cpu: { humanReadableName: "sim", clockSpeed: { Hz: 1e9 }, arch: "x64" } }, supervisorInterfaces: [], capabilities: { cameras: [], sensors: [], labels: { fleet: "sim" } } };
  // A simulated agent applies at once what it is told and reports it (it holds no files).
  // Like the real agent, it tries again until the control plane has its report (a loaded local runtime answers 5xx now and then).
  const onDeployments = async (d, _ws, _version, attempt = 0) => {
    const auth = { authorization: `Bearer ${d.credential}` };
    try {
      const got = await fetch(`${cp.url}/v1/agent/deployments`, { headers: auth, signal: AbortSignal.timeout(60_000) });
      if (!got.ok) throw new Error(`desired: ${got.status}`);
      const desired = await got.json();
      const states = desired.deployments.map((p) => ({ deployment: p.deployment, generation: p.generation, state: "active", reason: null }));
      if (!states.length) return;
      const sent = await fetch(`${cp.url}/v1/agent/deployments/status`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ states }), signal: AbortSignal.timeout(60_000) });
      if (!sent.ok) throw new Error(`status: ${sent.status}`);
      if (!applied.has(d.deviceId)) applied.set(d.deviceId, Date.now() - t0);
    } catch (e) {
      retries++;
      if (attempt < 8) {
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
        return onDeployments(d, _ws, _version, attempt + 1);
      }
      console.error(`device ${d.deviceId} gave up reporting: ${e}`);
    }
  };
  const registerStart = Date.now();
  const sim = await fleet(cp, register, N, 1, { description, onDeployments, heartbeatMs: 5_000, heartbeatDevices: 2, progress: (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`) });
  console.log(`${N} simulated devices registered and connected in ${((Date.now() - registerStart) / 1000).toFixed(1)} s`);
  await new Promise((r) => setTimeout(r, 2_000)); // the listing has every device online

  // Targets whether or not they are online now: only 2 simulated agents send heartbeats (1,000 every
  // 10 s would be 100 requests/s on a shared 2-core machine), so the gate's silence limit is set wide.
  const manifest = { id: "fleet-app", selector: { labels: { fleet: "sim" }, online: null }, modules: [{ name: "fibo", digest, functions: { fibo: { params: [{ name: "n", type: "integer" }], result: "integer" } }, mounts: [{ name: "v2.txt", base64: btoa("v2") }] }] };
  const jws = await new SignJWT({ deployment: manifest }).setProtectedHeader({ alg: "EdDSA", kid }).setIssuedAt().setExpirationTime("5m").setJti(crypto.randomUUID()).sign(pair.privateKey);
  const strategy = { waveSize: { percent: 5 }, exponentialRate: { incrementFactor: 2 } };
  const gate = { soakMs: 5_000, maxSilenceMs: 3_600_000, applyTimeoutMs: 120_000 };
  t0 = Date.now();
  const started = await api("POST", "/v1/rollouts", { id: "bench-rollout", deployment: jws, strategy, gate, rollback: { failureThreshold: { percent: 5 } } });
  if (started.status !== 201) throw new Error(JSON.stringify(started.body));
  console.log(`rollout started: ${started.body.targets} targets, waves ${started.body.waves.map((w) => w.size).join(", ")}, soak ${gate.soakMs} ms (POST took ${Date.now() - t0} ms)`);
  let at95 = null;
  let view;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    if (at95 === null && applied.size >= Math.ceil(0.95 * N)) at95 = [...applied.values()].sort((a, b) => a - b)[Math.ceil(0.95 * N) - 1];
    view = (await api("GET", "/v1/rollouts/bench-rollout")).body;
    if (["committed", "rolled_back", "aborted"].includes(view.state)) break;
    if (Date.now() - t0 > 15 * 60_000) throw new Error(`rollout still ${view.state} after 15 min`);
  }
  if (at95 === null) at95 = [...applied.values()].sort((a, b) => a - b)[Math.ceil(0.95 * N) - 1] ?? NaN;
  console.log(`simulated agents' report retries: ${retries}`);
  console.log(`waves: ${view.waves.map((w) => `${w.index}:${w.size} ${w.state} ${JSON.stringify(w.gate)}`).join(" | ")}`);
  if (view.rollbackReason) console.log(`rollback: ${JSON.stringify(view.rollbackReason).slice(0, 1500)}`);
  const soaks = view.waves.length * gate.soakMs;
  console.log(`rollout ${view.state}: ${JSON.stringify(view.counts)}; 95% of ${N} devices applied the new version ${(at95 / 1000).toFixed(1)} s after the POST; all waves passed and committed after ${((Date.parse(view.updatedAt) - t0) / 1000).toFixed(1)} s (of which ${soaks / 1000} s are the ${view.waves.length} soaks)`);

  // Failover: a job bound to one of the two heartbeating devices (labelled standby=pair) moves to
  // the other after the first has been silent for afterMs.
  const afterMs = 15_000; // longer than the heartbeat interval, or the policy would fire between two heartbeats
  for (const d of sim.devices.slice(0, 2)) await api("PUT", `/v1/devices/${d.deviceId}/labels`, { labels: { fleet: "sim", standby: "pair" } });
  const job = await api("POST", "/v1/jobs", { selector: { labels: { standby: "pair" } }, module: digest, function: "fibo", args: [10], start: false, failover: { onOffline: "move", afterMs } });
  if (job.status !== 202) throw new Error(JSON.stringify(job.body));
  // Go silent right after a heartbeat was sent, so the silence is measured from it.
  const before = sim.lastBeat.get(job.body.device);
  while (sim.lastBeat.get(job.body.device) === before) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 200)); // it reaches the device object
  const lastBeat = sim.silence(job.body.device);
  let moved;
  for (;;) {
    await new Promise((r) => setTimeout(r, 50));
    moved = (await api("GET", `/v1/jobs/${job.body.id}`)).body;
    if (moved.failover?.movedTo) break;
    if (Date.now() - lastBeat > 120_000) throw new Error(`no failover after 120 s: ${JSON.stringify(moved.failover)}`);
  }
  const seen = Date.now();
  const lastSeen = Date.parse((await api("GET", `/v1/devices/${job.body.device}`)).body.lastSeenAt);
  console.log(`failover (afterMs ${afterMs}): last heartbeat the device object recorded -> policy fired ${Date.parse(moved.failover.firedAt) - lastSeen} ms, -> moved job visible to a polling client ${seen - lastSeen} ms (the simulator's last heartbeat send was ${lastSeen - lastBeat} ms before the recorded one; old job ${moved.state}, new job on ${moved.failover.movedTo.slice(0, 17)})`);
  sim.close();
} finally {
  await cp.stop();
}
