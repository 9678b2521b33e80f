/** Entry point of a pool worker thread: runs tasks one at a time. */
import "./quiet-warnings.js";
import { parentPort } from "node:worker_threads";
import { execute, type ExecTask } from "./execute.js";

parentPort!.on("message", (msg: { id: number; task: ExecTask }) => {
  parentPort!.postMessage({ id: msg.id, result: execute(msg.task) });
});
