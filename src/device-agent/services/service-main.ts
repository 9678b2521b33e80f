/**
 * The entry of a service's child process: `node service-main.js <run.json>`. It runs the
 * Wasm with node:wasi through the same code as jobs (ModuleCache: the memory cap written
 * into the binary; execute: WASI preview1, the sandbox preopened as ".", output cut into
 * bounded lines), writes each output line to output.log (rotated, so bounded on disk),
 * and before it exits writes exit.json saying how the run ended. It is its own process
 * group (spawned detached), so it outlives the agent, and SIGSTOP/SIGCONT freeze and
 * continue it for real.
 */
import "../quiet-warnings.js";
import { closeSync, openSync, renameSync, statSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import type { LogLine } from "../../protocol/job.js";
import { WASM_PAGE_BYTES } from "../../wasm/binary.js";
import { FILES, OUTPUT_ROTATE_BYTES, readJsonSync, writeJsonAtomicSync, type ExitReport, type RunConfig } from "./files.js";

const { execute } = await import("../execute.js");
const { ModuleCache } = await import("../module-cache.js");

const configPath = process.argv[2]!;
const config = readJsonSync<RunConfig>(configPath)!;
const dir = dirname(configPath);
const outPath = join(dir, FILES.output);

let out = openSync(outPath, "a");
let written = (() => {
  try {
    return statSync(outPath).size;
  } catch {
    return 0;
  }
})();

function writeLines(lines: LogLine[]) {
  for (const l of lines) {
    const text = JSON.stringify(l) + "\n";
    writeSync(out, text);
    written += text.length;
    if (written >= OUTPUT_ROTATE_BYTES) {
      closeSync(out);
      renameSync(outPath, `${outPath}.1`);
      out = openSync(outPath, "a");
      written = 0;
    }
  }
}

function finish(report: Omit<ExitReport, "run" | "pid" | "at">): never {
  writeJsonAtomicSync(join(dir, FILES.exit), { run: config.run, pid: process.pid, at: Date.now(), ...report } satisfies ExitReport);
  process.exit(report.ok ? 0 : report.exitCode !== null && report.exitCode > 0 && report.exitCode < 256 ? report.exitCode : 1);
}

// The module is on disk already (the agent fetched and verified it); nothing is fetched from here.
const noNetwork = { moduleBinary: () => Promise.reject(new Error("the module is not on disk")) } as unknown as ConstructorParameters<typeof ModuleCache>[1];
let loaded;
try {
  loaded = await new ModuleCache(config.dataDir, noNetwork, Math.floor((config.maxMemoryMb * 1024 * 1024) / WASM_PAGE_BYTES), { tries: 1, delayMs: () => 0 }).get(config.digest);
} catch (e) {
  finish({ ok: false, exitCode: null, kind: (e as { kind?: string }).kind ?? "module-unavailable", message: String((e as Error)?.message ?? e) });
}
const fn = loaded.info.exports.find((x) => x.kind === "function" && x.name === config.entry);
if (!fn?.signature) finish({ ok: false, exitCode: null, kind: "missing-function", message: `the module exports no function "${config.entry}"` });

const command = config.entry === "_start";
const result = execute(
  {
    module: loaded.module,
    moduleKey: config.digest,
    function: config.entry,
    signature: fn.signature,
    // A command takes its arguments as argv; a function as its parameters.
    args: command ? [] : config.args,
    argv: command ? [config.name, ...config.args.map(String)] : [config.entry],
    env: config.env,
    sandboxDir: config.sandboxDir,
    maxOutputBytes: 0, // the lines are the output: nothing is kept in memory beyond them
    maxLogLines: Number.POSITIVE_INFINITY,
    lineFlushMs: 0,
  },
  writeLines,
);
writeLines(result.logs);
if (result.ok) finish({ ok: true, exitCode: result.exitCode ?? 0, kind: null, message: result.exitCode ? `exited with code ${result.exitCode}` : null });
finish({ ok: false, exitCode: result.exitCode, kind: result.kind, message: result.message });
