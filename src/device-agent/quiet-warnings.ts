/**
 * node:wasi prints an ExperimentalWarning on every thread that loads it; on a
 * device that is noise in the logs. Warnings are emitted on the next tick, so
 * replacing the default printer here (imported first) still catches it.
 */
process.removeAllListeners("warning");
process.on("warning", (w) => {
  if (w.name === "ExperimentalWarning" && w.message.includes("WASI")) return;
  process.stderr.write(`${w.name}: ${w.message}\n`);
});
export {};
