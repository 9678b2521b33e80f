// Simulated agents: K devices in this one process, each with its own WebSocket to its own
// device object, running fibo(20) bare on receipt and reporting over the socket.
import WebSocket from "ws";
import { readFileSync } from "node:fs";

const DESCRIPTION = { platform: { memory: { bytes: 1 << 30 }, cpu: { humanReadableName: "sim", clockSpeed: { Hz: 1e9 } } }, supervisorInterfaces: [] };

/** `credit`: jobs each simulated agent takes at once (it answers at once, so it is always free again). */
export async function fleet(cp, registerKey, k, credit = 1) {
  const module = await WebAssembly.compile(readFileSync("examples/wasm/fibo.wasm"));
  const devices = [];
  const reg = async (attempt = 0) => {
    const r = await fetch(`${cp.url}/v1/devices/register`, { method: "POST", headers: { authorization: `Bearer ${registerKey}`, "content-type": "application/json" }, body: JSON.stringify({ description: DESCRIPTION }) });
    // The local runtime answers 503 "restarted mid-request" when it reloads; a registration is safe to repeat.
    if (r.status === 503 && attempt < 3) return reg(attempt + 1);
    if (!r.ok) throw new Error(`register: ${r.status} ${await r.text()}`);
    return r.json();
  };
  for (let i = 0; i < k; i += 50) devices.push(...(await Promise.all(Array.from({ length: Math.min(50, k - i) }, () => reg()))));

  let done = 0;
  let allDone;
  const finished = new Promise((r) => (allDone = r));
  const sockets = [];
  const open = (d) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${cp.url.replace("http", "ws")}/v1/agent/ws`, { headers: { authorization: `Bearer ${d.credential}` }, perMessageDeflate: false });
      let id = 1;
      ws.on("open", () => {
        ws.send(JSON.stringify({ t: "credit", free: credit }));
        resolve(ws);
      });
      ws.on("error", reject);
      ws.on("message", (data) => {
        const m = JSON.parse(String(data));
        if (m.t === "reported") {
          if (++done === k) allDone();
          return;
        }
        if (m.t !== "jobs") return;
        const results = m.jobs.map((j) => {
          const value = Number(new WebAssembly.Instance(module, {}).exports.fibo(20n));
          return { jobId: j.jobId, leaseToken: j.leaseToken, outcome: "succeeded", error: null, result: { value, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 0 } };
        });
        ws.send(JSON.stringify({ t: "results", id: id++, results, free: credit }));
      });
    });
  for (let i = 0; i < devices.length; i += 100) sockets.push(...(await Promise.all(devices.slice(i, i + 100).map(open))));
  return { devices, sockets, finished, close: () => sockets.forEach((s) => s.close()) };
}
