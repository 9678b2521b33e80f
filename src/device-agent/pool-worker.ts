/** Entry point of a pool worker thread: runs the tasks of each batch in order, answering each as it ends. */
import "./quiet-warnings.js";
import { parentPort } from "node:worker_threads";
import type { ExecTask } from "./execute.js";

// Loaded after the warning filter (see cli.ts).
const { execute } = await import("./execute.js");

/** Compiled modules this thread has been sent; later tasks name them by key only (cloning a module per task is costly). */
const modules = new Map<string, WebAssembly.Module>();
/** Instances kept between calls (deployments with a per-deployment instance). */
const instances = new Map();

type Sent = { id: number; task: Omit<ExecTask, "module"> & { module?: WebAssembly.Module } };

parentPort!.on("message", (msg: { batch: Sent[] }) => {
  for (const { id, task } of msg.batch) {
    if (task.module) modules.set(task.moduleKey, task.module);
    const module = modules.get(task.moduleKey)!;
    const result = execute({ ...task, module }, (lines) => parentPort!.postMessage({ id, log: lines }), instances);
    parentPort!.postMessage({ id, result });
  }
});
