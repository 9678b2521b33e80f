// The peer: BullMQ on a local redis-server doing the same fibo(20) in Wasm per job.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { stats } from "./lib.mjs";

/** The peer is not a dependency of the project (its optional native addon breaks `npm ci` here): installed on demand, pinned. */
const PEER_PACKAGES = ["bullmq@6.7.0", "ioredis@6.0.0"];

async function loadBullmq() {
  try {
    return await import("bullmq");
  } catch {
    console.error(`installing ${PEER_PACKAGES.join(", ")} for the BullMQ peer (not saved to package.json) ...`);
    const r = spawnSync("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error", ...PEER_PACKAGES], { stdio: "inherit" });
    if (r.status !== 0) return null;
    // This process has already failed to resolve "bullmq" (and remembers it): import the installed entry by path.
    const mod = await import(new URL("../node_modules/bullmq/dist/cjs/index.js", import.meta.url).href);
    return mod.Queue ? mod : mod.default;
  }
}

function ensureRedis() {
  if (spawnSync("sh", ["-c", "command -v redis-server"]).status === 0) return true;
  if (process.getuid?.() !== 0) return false;
  console.error("installing redis-server (Debian package) for the BullMQ peer ...");
  spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore" });
  return spawnSync("apt-get", ["install", "-y", "-qq", "redis-server"], { stdio: "ignore", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } }).status === 0;
}

export async function bullmqPeer({ concurrency = 16, calls = 2000, bulkJobs = 10_000, workerConcurrency = 2 } = {}) {
  if (!ensureRedis()) return { skipped: "redis-server is not installed and could not be installed" };
  const bullmq = await loadBullmq();
  if (!bullmq) return { skipped: `${PEER_PACKAGES.join(", ")} could not be installed` };
  const { Queue, QueueEvents, Worker } = bullmq;
  const port = 6390 + Math.floor(Math.random() * 500);
  const redis = spawn("redis-server", ["--port", String(port), "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  await new Promise((r) => setTimeout(r, 500));
  const connection = { host: "127.0.0.1", port, maxRetriesPerRequest: null };
  const module = await WebAssembly.compile(readFileSync("examples/wasm/fibo.wasm"));
  const queue = new Queue("fibo", { connection });
  queue.setMaxListeners(64); // 16 submitters each wait on the queue
  const events = new QueueEvents("fibo", { connection });
  const worker = new Worker("fibo", async (job) => Number(new WebAssembly.Instance(module, {}).exports.fibo(BigInt(job.data.n))), { connection, concurrency: workerConcurrency });
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady(), worker.waitUntilReady()]);
  try {
    for (let i = 0; i < 100; i++) await (await queue.add("f", { n: 20 })).waitUntilFinished(events);
    const lat = [];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next++ < calls) {
        const t = performance.now();
        const job = await queue.add("f", { n: 20 }, { removeOnComplete: true });
        if ((await job.waitUntilFinished(events)) !== 10946) throw new Error("bad result");
        lat.push(performance.now() - t);
      }
    }));
    const concurrent = { ...stats(lat), perSecond: calls / ((performance.now() - t0) / 1000) };

    let completed = 0;
    const allDone = new Promise((r) => worker.on("completed", () => ++completed === bulkJobs && r()));
    const t1 = performance.now();
    for (let i = 0; i < bulkJobs; i += 1000) await queue.addBulk(Array.from({ length: 1000 }, () => ({ name: "f", data: { n: 20 }, opts: { removeOnComplete: true } })));
    await allDone;
    const bulk = { jobs: bulkJobs, perSecond: bulkJobs / ((performance.now() - t1) / 1000) };
    return { concurrent, bulk };
  } finally {
    await worker.close();
    await events.close();
    await queue.close();
    redis.kill("SIGTERM");
  }
}
