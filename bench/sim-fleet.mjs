// Simulated agents: K devices in this one process, each with its own WebSocket to its own
// device object, answering each pushed fibo(20) at once over the socket. They are instant:
// the answer is computed once, with the real module, and reused, because a real device's Wasm
// runs on that device, not on the control plane's machine (here, instantiating a module costs
// 0.2-0.6 ms of this process's CPU, which hosts wrangler's proxy too, and it made the "control
// plane alone" rows measure this process instead).
import WebSocket from "ws";
import { readFileSync } from "node:fs";

const DESCRIPTION = { platform: { memory: { bytes: 1 << 30 }, cpu: { humanReadableName: "sim", clockSpeed: { Hz: 1e9 } } }, supervisorInterfaces: [] };

/**
 * `credit`: jobs each simulated agent takes at once (it answers at once, so it is always free again).
 * `opts.description`: what the devices declare (labels for selectors); `opts.onDeployments(device, ws)`:
 * called when the control plane says the desired deployments changed; `opts.heartbeatMs`: send a
 * heartbeat over each socket this often (only the first `opts.heartbeatDevices`, if set; also returned:
 * `lastBeat` and `silence(deviceId)`).
 */
export async function fleet(cp, registerKey, k, credit = 1, opts = {}) {
  const module = await WebAssembly.compile(readFileSync("examples/wasm/fibo.wasm"));
  const value = Number(new WebAssembly.Instance(module, {}).exports.fibo(20n));
  const devices = [];
  const reg = async (_, attempt = 0) => {
    // Every request has a timeout (a pending fetch can otherwise hang forever on Node 20's undici).
    const r = await fetch(`${cp.url}/v1/devices/register`, { method: "POST", headers: { authorization: `Bearer ${registerKey}`, "content-type": "application/json" }, body: JSON.stringify({ description: opts.description ?? DESCRIPTION }), signal: AbortSignal.timeout(30_000) }).catch((e) => ({ status: 599, ok: false, text: async () => String(e) }));
    // An overloaded local runtime answers 503 now and then: try again a few times.
    if (r.status >= 500 && attempt < 8) {
      await new Promise((res) => setTimeout(res, 250 * 2 ** attempt));
      return reg(_, attempt + 1);
    }
    if (!r.ok) throw new Error(`register: ${r.status} ${await r.text()}`);
    return r.json();
  };
  for (let i = 0; i < k; i += 50) {
    devices.push(...(await Promise.all(Array.from({ length: Math.min(50, k - i) }, (_, j) => reg(j)))));
    opts.progress?.(`registered ${devices.length}`);
  }

  let done = 0;
  let allDone;
  const finished = new Promise((r) => (allDone = r));
  const sockets = [];
  // A handshake the loaded local runtime never answers is given up after 20 s and tried again.
  const open = (d, attempt = 0) =>
    openOnce(d).catch((e) => (attempt < 5 ? open(d, attempt + 1) : Promise.reject(e)));
  const openOnce = (d) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${cp.url.replace("http", "ws")}/v1/agent/ws`, { headers: { authorization: `Bearer ${d.credential}` }, perMessageDeflate: false, handshakeTimeout: 20_000 });
      let id = 1;
      ws.on("open", () => {
        ws.send(JSON.stringify({ t: "credit", free: credit }));
        resolve(ws);
      });
      ws.on("error", reject);
      ws.on("message", (data) => {
        const m = JSON.parse(String(data));
        if (m.t === "deployments") {
          opts.onDeployments?.(d, ws, m.version);
          return;
        }
        if (m.t === "reported") {
          if (++done === k) allDone();
          return;
        }
        if (m.t !== "jobs") return;
        const results = m.jobs.map((j) => {
          return { jobId: j.jobId, leaseToken: j.leaseToken, outcome: "succeeded", error: null, result: { value, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 0 } };
        });
        ws.send(JSON.stringify({ t: "results", id: id++, results, free: credit }));
      });
    });
  for (let i = 0; i < devices.length; i += 100) {
    sockets.push(...(await Promise.all(devices.slice(i, i + 100).map((d) => open(d)))));
    opts.progress?.(`connected ${sockets.length}`);
  }
  const lastBeat = new Map();
  const silenced = new Set();
  const HEALTH = { cpuPercent: 1, memoryUsedBytes: 1, memoryTotalBytes: 2, loadAverage: [0, 0, 0], uptimeSeconds: 1, diskFreeBytes: 1, jobsRunning: 0 };
  let beats = 1_000_000;
  const beat = () => {
    for (const [i, ws] of sockets.entries()) {
      if (i >= (opts.heartbeatDevices ?? Infinity)) break;
      const id = devices[i].deviceId;
      if (silenced.has(id) || ws.readyState !== WebSocket.OPEN) continue;
      ws.send(JSON.stringify({ t: "heartbeat", id: beats++, health: HEALTH, runningJobs: [], logs: [] }));
      lastBeat.set(id, Date.now());
    }
  };
  const timer = opts.heartbeatMs ? setInterval(beat, opts.heartbeatMs) : null;
  if (timer) beat();
  /** Stops a device's heartbeats and closes its socket; answers when it was last heard. */
  const silence = (deviceId) => {
    silenced.add(deviceId);
    sockets[devices.findIndex((d) => d.deviceId === deviceId)]?.close();
    return lastBeat.get(deviceId);
  };
  return { devices, sockets, finished, lastBeat, silence, close: () => { if (timer) clearInterval(timer); sockets.forEach((s) => s.close()); } };
}
