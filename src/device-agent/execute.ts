/**
 * Runs one call of one export in a fresh instance. This is what a pool worker
 * thread does per job; it is kept free of thread plumbing so it can be read
 * (and measured) on its own.
 */
import { WASI } from "node:wasi";
import { coerceArgs, resultToJson, WASI_MODULES, type Arg, type FunctionSignature, type ResultValue } from "../protocol/wasm.js";
import { LIMITS, type FailureKind, type LogLine } from "../protocol/job.js";

export interface ExecTask {
  module: WebAssembly.Module;
  /** names the module across threads (digest): a thread is sent each module once */
  moduleKey: string;
  function: string;
  signature: FunctionSignature;
  args: Arg[];
  /** preopened as the guest's "." */
  sandboxDir: string;
  /** keep the instance between calls under this key (a deployment's instance); absent: a fresh instance per call */
  instanceKey?: string;
  maxOutputBytes: number;
  /** the guest's argv (default: the function's name alone) */
  argv?: string[];
  /** the guest's environment (default: empty) */
  env?: Record<string, string>;
  /** output lines handed out in all (default LIMITS.maxLogLines; a service's lines go to a bounded ring, so it passes Infinity) */
  maxLogLines?: number;
  /** lines are handed to onLines at most this often (default 50 ms; 0: as each line ends) */
  lineFlushMs?: number;
}

export interface Captured {
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  durationMs: number;
  /** output lines not yet handed to `onLines` while the job ran */
  logs: LogLine[];
}

/** Lines are handed out while the guest runs, at most this often (or when this many are waiting). */
const LINE_FLUSH_MS = 50;
const LINE_FLUSH_COUNT = 100;

/**
 * Splits what the guest writes into timestamped lines, bounded in count and length.
 * Memory and work stay linear in what is written however it is written: a line
 * that reaches the maximum length is cut and handed out at once, and the rest of
 * it is dropped until its newline comes (a guest writing megabytes without a
 * newline would otherwise have that whole line held and rescanned on every write).
 */
export class LineSplitter {
  private readonly partial = ["", ""];
  /** the stream's current line was already cut and handed out: drop until its newline */
  private readonly cut = [false, false];
  private decoders = [new TextDecoder(), new TextDecoder()];
  private pending: LogLine[] = [];
  private total = 0;
  private lastFlush = Date.now();
  truncated = false;

  constructor(
    private readonly onLines?: (lines: LogLine[]) => void,
    private readonly maxLines: number = LIMITS.maxLogLines,
    private readonly flushMs: number = LINE_FLUSH_MS,
  ) {}

  write(fd: 1 | 2, bytes: Uint8Array) {
    if (this.total >= this.maxLines) return this.markTruncated(); // nothing more is kept: not even decoded
    const s = fd - 1;
    if (this.cut[s]) {
      // Inside a line already cut: skip to its end without decoding (a newline byte is never part of a UTF-8 sequence).
      const newline = bytes.indexOf(0x0a);
      if (newline < 0) return;
      this.cut[s] = false;
      this.decoders[s] = new TextDecoder();
      bytes = bytes.subarray(newline + 1);
    }
    const text = this.decoders[s]!.decode(bytes, { stream: true });
    for (let start = 0; ; ) {
      const newline = text.indexOf("\n", start);
      this.extend(fd, text, start, newline < 0 ? text.length : newline);
      if (newline < 0) break;
      if (this.cut[s]) this.cut[s] = false;
      else this.push(fd, this.partial[s]!);
      this.partial[s] = "";
      start = newline + 1;
    }
    const now = Date.now();
    if (this.onLines && this.pending.length > 0 && (now - this.lastFlush >= this.flushMs || this.pending.length >= LINE_FLUSH_COUNT)) {
      this.onLines(this.pending);
      this.pending = [];
      this.lastFlush = now;
    }
  }

  /** Adds text[start, end) (no newline in it) to the stream's current line, cutting the line at the maximum length. */
  private extend(fd: 1 | 2, text: string, start: number, end: number) {
    const s = fd - 1;
    if (this.cut[s] || end === start) return;
    const room = LIMITS.maxLogLineBytes - this.partial[s]!.length;
    if (end - start < room) {
      this.partial[s] += text.slice(start, end);
      return;
    }
    this.push(fd, this.partial[s] + text.slice(start, start + room));
    this.partial[s] = "";
    this.cut[s] = true;
  }

  private markTruncated() {
    if (!this.truncated) this.pending.push({ at: Date.now(), stream: "stderr", line: `[wasmvisor] output truncated after ${this.maxLines} lines` });
    this.truncated = true;
  }

  private push(fd: 1 | 2, line: string) {
    if (this.total >= this.maxLines) return this.markTruncated();
    this.total++;
    this.pending.push({ at: Date.now(), stream: fd === 1 ? "stdout" : "stderr", line });
  }

  /** Characters held now: unterminated lines and lines not yet handed out. */
  get heldChars(): number {
    return this.partial[0]!.length + this.partial[1]!.length + this.pending.reduce((n, l) => n + l.line.length, 0);
  }

  /** What is left, including unterminated last lines. */
  rest(): LogLine[] {
    for (const fd of [1, 2] as const) if (this.partial[fd - 1]) this.push(fd, this.partial[fd - 1]!);
    this.partial[0] = this.partial[1] = "";
    this.cut[0] = this.cut[1] = false;
    const out = this.pending;
    this.pending = [];
    return out;
  }
}

export type ExecResult =
  | ({ ok: true; value: ResultValue; exitCode: number | null } & Captured)
  /** `rejected`: refused before running (it cannot run on this device at all) */
  | ({ ok: false; kind: FailureKind; message: string; exitCode: number | null; rejected?: boolean } & Captured);


/** Thrown by our proc_exit: unwinds the guest and carries the code. */
class ProcExit {
  constructor(readonly code: number) {}
}

/** Keeps what the guest writes to fds 1 and 2, up to a bound per stream, in memory (no files). */
class OutputCapture {
  private readonly chunks: [Uint8Array[], Uint8Array[]] = [[], []];
  private readonly sizes = [0, 0];
  readonly truncated = [false, false];
  constructor(private readonly max: number, readonly lines: LineSplitter) {}

  fdWrite(memory: WebAssembly.Memory, fd: 1 | 2, iovs: number, iovsLen: number, nwrittenPtr: number): number {
    const view = new DataView(memory.buffer);
    const s = fd - 1;
    let total = 0;
    for (let i = 0; i < iovsLen; i++) {
      const ptr = view.getUint32(iovs + i * 8, true);
      const len = view.getUint32(iovs + i * 8 + 4, true);
      total += len;
      if (len > 0) this.lines.write(fd, new Uint8Array(memory.buffer, ptr, len));
      const room = this.max - this.sizes[s]!;
      if (room <= 0) {
        if (len > 0) this.truncated[s] = true;
        continue;
      }
      const take = Math.min(room, len);
      this.chunks[s]!.push(new Uint8Array(memory.buffer, ptr, take).slice());
      this.sizes[s]! += take;
      if (take < len) this.truncated[s] = true;
    }
    view.setUint32(nwrittenPtr, total, true);
    return 0;
  }

  text(fd: 1 | 2): string {
    return Buffer.concat(this.chunks[fd - 1]!).toString("utf8");
  }
}

/** An instance and the pieces a call swaps in: the output capture of the call running now. */
interface Live {
  instance: WebAssembly.Instance;
  memory: WebAssembly.Memory | undefined;
  /** where fd 1 and 2 go during the current call */
  capture: { current: OutputCapture | null };
}

/** Instances kept between calls (a deployment's instance): by key, in this thread. */
export type InstanceStore = Map<string, Live>;

function instantiate(task: ExecTask): { ok: true; live: Live } | { ok: false; kind: FailureKind; message: string } {
  const imports: WebAssembly.Imports = {};
  const capture: Live["capture"] = { current: null };
  let memory: WebAssembly.Memory | undefined;
  let wasi: WASI | undefined;
  const needsWasi = WebAssembly.Module.imports(task.module).some((i) => WASI_MODULES.has(i.module));
  if (needsWasi) {
    // No host environment leaks in: env is empty and only the sandbox is preopened.
    wasi = new WASI({ version: "preview1", args: task.argv ?? [task.function], env: task.env ?? {}, preopens: { ".": task.sandboxDir }, returnOnExit: true });
    const base = wasi.wasiImport as Record<string, (...a: number[]) => number>;
    const ns = {
      ...base,
      fd_write: (fd: number, iovs: number, iovsLen: number, nwritten: number) =>
        (fd === 1 || fd === 2) && memory && capture.current ? capture.current.fdWrite(memory, fd, iovs, iovsLen, nwritten) : base.fd_write!(fd, iovs, iovsLen, nwritten),
      proc_exit: (code: number) => {
        throw new ProcExit(code);
      },
    };
    for (const m of WASI_MODULES) imports[m] = ns;
  }
  let instance: WebAssembly.Instance;
  try {
    instance = new WebAssembly.Instance(task.module, imports);
  } catch (e) {
    if (e instanceof RangeError) return { ok: false, kind: "memory-limit", message: `cannot allocate the module's memory: ${e.message}` };
    const missing = WebAssembly.Module.imports(task.module)
      .filter((i) => !(imports[i.module] && i.name in (imports[i.module] as object)))
      .map((i) => `${i.module}.${i.name}`);
    const detail = missing.length ? ` (this agent does not provide: ${missing.join(", ")})` : "";
    return { ok: false, kind: "link-error", message: `${(e as Error).message}${detail}` };
  }
  memory = instance.exports.memory instanceof WebAssembly.Memory ? instance.exports.memory : undefined;
  if (wasi && memory) {
    // Bind WASI to the memory only: a command module's _start is not run for a function call (as wasmiot does),
    // but a reactor's _initialize is.
    wasi.initialize({ exports: { memory } } as unknown as WebAssembly.Instance);
    const init = instance.exports._initialize;
    if (typeof init === "function" && task.function !== "_initialize") (init as () => void)();
  }
  return { ok: true, live: { instance, memory, capture } };
}

/**
 * Runs one call: in a fresh instance, or (with `task.instanceKey` and a store)
 * in the instance kept under that key, made on its first call. A trap leaves a
 * kept instance in an unknown state, so it is dropped.
 */
export function execute(task: ExecTask, onLines?: (lines: LogLine[]) => void, store?: InstanceStore): ExecResult {
  const started = performance.now();
  const capture = new OutputCapture(task.maxOutputBytes, new LineSplitter(onLines, task.maxLogLines, task.lineFlushMs));
  const captured = (): Captured => ({
    stdout: capture.text(1),
    stderr: capture.text(2),
    stdoutTruncated: capture.truncated[0]!,
    stderrTruncated: capture.truncated[1]!,
    durationMs: performance.now() - started,
    logs: capture.lines.rest(),
  });
  const failure = (kind: FailureKind, message: string, exitCode: number | null = null, rejected = false): ExecResult => ({
    ok: false, kind, message, exitCode, ...(rejected ? { rejected } : {}), ...captured(),
  });

  const args = coerceArgs(task.signature, task.args);
  if (!args.ok) return failure("bad-arguments", `${task.function}: ${args.message}`);

  const key = store && task.instanceKey;
  let live = key ? store.get(key) : undefined;
  if (!live) {
    let made;
    try {
      made = instantiate(task);
    } catch (e) {
      if (e instanceof ProcExit) return failure("exit", `the module exited with code ${e.code} while starting`, e.code);
      return failure("trap", `the module trapped while starting: ${(e as Error)?.message ?? String(e)}`);
    }
    if (!made.ok) return failure(made.kind, made.message, null, true);
    live = made.live;
    if (key) store.set(key, live);
  }

  const fn = live.instance.exports[task.function];
  if (typeof fn !== "function") return failure("missing-function", `the module exports no function "${task.function}"`);
  live.capture.current = capture;
  try {
    const value = (fn as (...a: unknown[]) => unknown)(...args.values);
    return { ok: true, value: resultToJson(value), exitCode: null, ...captured() };
  } catch (e) {
    if (key) store.delete(key);
    if (e instanceof ProcExit) {
      return e.code === 0
        ? { ok: true, value: null, exitCode: 0, ...captured() }
        : failure("exit", `the module exited with code ${e.code}`, e.code);
    }
    if (e instanceof WebAssembly.RuntimeError) return failure("trap", `trap: ${e.message}`);
    if (e instanceof RangeError) return failure("memory-limit", e.message);
    return failure("trap", `the call threw: ${(e as Error)?.message ?? String(e)}`);
  } finally {
    live.capture.current = null;
  }
}
