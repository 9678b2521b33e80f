/** Entry point of a pool worker thread: runs tasks one at a time. */
import "./quiet-warnings.js";
import { parentPort } from "node:worker_threads";
import type { ExecTask } from "./execute.js";

// Loaded after the warning filter (see cli.ts).
const { execute } = await import("./execute.js");

parentPort!.on("message", (msg: { id: number; task: ExecTask }) => {
  const result = execute(msg.task, (lines) => parentPort!.postMessage({ id: msg.id, log: lines }));
  parentPort!.postMessage({ id: msg.id, result });
});
