// Agent overhead: the same call bare in-process (instantiate + call) and through the
// agent's worker pool (thread hop, fresh instance, WASI wiring, output capture), no network.
import { readFileSync } from "node:fs";
import { WorkerPool } from "../dist/device-agent/pool.js";
import { inspect } from "../dist/wasm/binary.js";
import { stats } from "./lib.mjs";

export async function agentOverhead(calls = 5000) {
  const bytes = readFileSync("examples/wasm/fibo.wasm");
  const module = await WebAssembly.compile(bytes);
  const signature = inspect(new Uint8Array(bytes)).exports.find((e) => e.name === "fibo").signature;
  const bare = () => {
    const t = performance.now();
    const instance = new WebAssembly.Instance(module, {});
    if (instance.exports.fibo(20n) !== 10946n) throw new Error("bad");
    return performance.now() - t;
  };
  const pool = new WorkerPool(1);
  const task = { module, moduleKey: "fibo", function: "fibo", signature, args: [20], sandboxDir: "/tmp", maxOutputBytes: 65536 };
  const pooled = async () => {
    const t = performance.now();
    const r = await pool.run("k", task, 10_000);
    if (!r.ok || r.value !== 10946) throw new Error(JSON.stringify(r));
    return performance.now() - t;
  };
  for (let i = 0; i < 500; i++) { bare(); await pooled(); }
  const b = [], p = [];
  for (let i = 0; i < calls; i++) { b.push(bare()); p.push(await pooled()); }
  await pool.close();
  return { bare: stats(b), pool: stats(p) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await agentOverhead();
  console.log(`bare p50 ${(r.bare.p50 * 1000).toFixed(0)} us, p99 ${(r.bare.p99 * 1000).toFixed(0)} us | pool p50 ${(r.pool.p50 * 1000).toFixed(0)} us, p99 ${(r.pool.p99 * 1000).toFixed(0)} us | overhead p50 ${((r.pool.p50 - r.bare.p50) * 1000).toFixed(0)} us`);
}
