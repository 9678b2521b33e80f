/** The worker pool with real threads (the built pool-worker.js) and real Wasm. */
import { afterEach, describe, expect, it } from "vitest";
import { WorkerPool } from "./pool.js";
import type { ExecTask } from "./execute.js";
import { inspect } from "../wasm/binary.js";
import { compileWat, WAT } from "../../test/helpers/wat.js";

const WORKER = new URL("../../dist/device-agent/pool-worker.js", import.meta.url);
const pools: WorkerPool[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
});

async function task(name: keyof typeof WAT, fn: string, args: ExecTask["args"]): Promise<ExecTask> {
  const bytes = await compileWat(WAT[name]);
  const signature = inspect(bytes).exports.find((e) => e.name === fn)!.signature!;
  return { module: await WebAssembly.compile(bytes), moduleKey: name, function: fn, signature, args, sandboxDir: "/tmp", maxOutputBytes: 1024 };
}

describe("WorkerPool", () => {
  it("stops the task that overruns inside a batch, and runs the ones queued behind it", async () => {
    const pool = new WorkerPool(1, WORKER);
    pools.push(pool);
    const add = await task("math", "add32", [2, 3]);
    const spin = await task("spin", "spin", []);
    const results = await Promise.all([
      pool.run("a", add, 5_000),
      pool.run("b", spin, 300),
      pool.run("c", add, 5_000),
      pool.run("d", add, 5_000),
    ]);
    expect(results.map((r) => (r.ok ? r.value : r.kind))).toEqual([5, "timeout", 5, 5]);
  });

  it("gives each task of a batch its own time limit", async () => {
    const pool = new WorkerPool(1, WORKER);
    pools.push(pool);
    const sleep = await task("sleep", "sleep_ms", [1_000]);
    // Three 1 s tasks in one batch take 3 s together, each well under its own 2.5 s limit
    // (the margin keeps a loaded machine from turning a slow start into a timeout).
    const results = await Promise.all([pool.run("a", sleep, 2_500), pool.run("b", sleep, 2_500), pool.run("c", sleep, 2_500)]);
    expect(results.every((r) => r.ok)).toBe(true);
  });

  it("cancels a task waiting in a thread's batch, and calls onStart only for tasks that start", async () => {
    const pool = new WorkerPool(1, WORKER);
    pools.push(pool);
    const sleep = await task("sleep", "sleep_ms", [200]);
    const add = await task("math", "add32", [1, 1]);
    const started: string[] = [];
    let secondStarted: () => void = () => undefined;
    const onSecond = new Promise<void>((r) => (secondStarted = r));
    // The first task occupies the thread; the next three queue up and then travel as one batch.
    const first = pool.run("first", sleep, 5_000, { onStart: () => started.push("first") });
    const second = pool.run("second", sleep, 5_000, { onStart: () => (started.push("second"), secondStarted()) });
    const victim = pool.run("victim", add, 5_000, { onStart: () => started.push("victim") });
    const after = pool.run("after", add, 5_000, { onStart: () => started.push("after") });
    await onSecond; // the batch [second, victim, after] is in the thread, second is running
    expect(pool.cancel("victim")).toBe(true);
    const results = await Promise.all([first, second, victim, after]);
    expect(results.map((r) => (r.ok ? "ok" : r.kind))).toEqual(["ok", "ok", "canceled", "ok"]);
    expect(started).toEqual(["first", "second", "after"]);
  });

  it("starts threads only when work needs them, up to its size", async () => {
    const pool = new WorkerPool(2, WORKER);
    pools.push(pool);
    expect(pool.threads).toBe(0);
    const add = await task("math", "add32", [1, 1]);
    await Promise.all(Array.from({ length: 10 }, (_, i) => pool.run(`t${i}`, add, 5_000)));
    expect(pool.threads).toBeLessThanOrEqual(2);
    expect(pool.threads).toBeGreaterThan(0);
  });
});
