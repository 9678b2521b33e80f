/**
 * A fixed pool of worker threads. A job that overruns its time is stopped by
 * terminating its thread (the only way to stop a Wasm loop), and the slot gets
 * a fresh thread; the pool keeps serving.
 */
import { Worker } from "node:worker_threads";
import type { ExecResult, ExecTask } from "./execute.js";
import type { LogLine } from "../protocol/job.js";

interface Pending {
  id: number;
  key: string;
  task: ExecTask;
  timeoutMs: number;
  resolve(r: ExecResult): void;
  onStart?: () => void;
  onLog?: (lines: LogLine[]) => void;
}

interface Slot {
  worker: Worker;
  current: (Pending & { timer: NodeJS.Timeout; started: number }) | null;
  idleSince: number;
  /** module keys this thread already holds */
  modules: Set<string>;
}

/** A thread idle this long is ended (an idle agent keeps little memory); the next job starts one again. */
export const THREAD_IDLE_MS = 30_000;

const EMPTY = { stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, logs: [] };

export class WorkerPool {
  /** up to `size` threads, started when work needs them */
  private slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;
  private readonly reaper: NodeJS.Timeout;

  constructor(readonly size: number, private readonly workerUrl = new URL("./pool-worker.js", import.meta.url), private readonly idleMs = THREAD_IDLE_MS) {
    this.reaper = setInterval(() => this.endIdleThreads(), Math.min(5_000, idleMs));
    this.reaper.unref();
  }

  /** Jobs running plus jobs waiting for a thread. */
  get load(): number {
    return this.queue.length + this.running;
  }

  get running(): number {
    return this.slots.filter((s) => s.current).length;
  }

  get threads(): number {
    return this.slots.length;
  }

  private endIdleThreads() {
    const now = Date.now();
    const [idle, keep] = [this.slots.filter((s) => !s.current && now - s.idleSince > this.idleMs), this.slots.filter((s) => s.current || now - s.idleSince <= this.idleMs)];
    this.slots = keep;
    for (const s of idle) void s.worker.terminate();
  }

  /** Runs the task when a thread is free; `onStart` is called when it gets one, `onLog` with output lines as they come. */
  run(key: string, task: ExecTask, timeoutMs: number, hooks: { onStart?: () => void; onLog?: (lines: LogLine[]) => void } = {}): Promise<ExecResult> {
    if (this.closed) return Promise.resolve({ ok: false, kind: "internal", message: "the agent is shutting down", exitCode: null, durationMs: 0, ...EMPTY });
    return new Promise((resolve) => {
      this.queue.push({ id: this.nextId++, key, task, timeoutMs, resolve, ...hooks });
      this.pump();
    });
  }

  /** Stops a job if it is queued or running; it then ends as "canceled". */
  cancel(key: string): boolean {
    const qi = this.queue.findIndex((p) => p.key === key);
    if (qi >= 0) {
      const [p] = this.queue.splice(qi, 1);
      p!.resolve({ ok: false, kind: "canceled", message: "canceled", exitCode: null, durationMs: 0, ...EMPTY });
      return true;
    }
    const slot = this.slots.find((s) => s.current?.key === key);
    if (!slot) return false;
    this.recycle(slot, { kind: "canceled", message: "canceled while running" });
    return true;
  }

  async close() {
    this.closed = true;
    clearInterval(this.reaper);
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private spawn(): Slot {
    const slot: Slot = { worker: new Worker(this.workerUrl), current: null, idleSince: Date.now(), modules: new Set() };
    slot.worker.on("message", (msg: { id: number; result?: ExecResult; log?: LogLine[] }) => {
      const cur = slot.current;
      if (!cur || cur.id !== msg.id) return;
      if (msg.log) return cur.onLog?.(msg.log);
      if (!msg.result) return;
      clearTimeout(cur.timer);
      slot.current = null;
      slot.idleSince = Date.now();
      cur.resolve(msg.result);
      this.pump();
    });
    slot.worker.on("error", (err) => {
      if (slot.current) this.recycle(slot, { kind: "internal", message: `the worker thread failed: ${err.message}` });
    });
    // A thread that ends while idle (crash, reaped) just leaves the pool; work starts a new one.
    slot.worker.on("exit", () => {
      if (!slot.current) this.slots = this.slots.filter((s) => s !== slot);
    });
    slot.worker.unref();
    return slot;
  }

  /** Ends the slot's job with `why`, replaces its thread and moves on. */
  private recycle(slot: Slot, why: { kind: "timeout" | "canceled" | "internal"; message: string }) {
    const cur = slot.current!;
    clearTimeout(cur.timer);
    slot.current = null;
    void slot.worker.terminate();
    this.slots = this.slots.filter((s) => s !== slot); // a fresh thread is started when work needs one
    cur.resolve({ ok: false, ...why, exitCode: null, durationMs: performance.now() - cur.started, ...EMPTY });
    this.pump();
  }

  private pump() {
    while (this.queue.length > 0 && !this.closed) {
      let slot = this.slots.find((s) => !s.current);
      if (!slot) {
        if (this.slots.length >= this.size) return;
        slot = this.spawn();
        this.slots.push(slot);
      }
      const p = this.queue.shift()!;
      const timer = setTimeout(() => this.recycle(slot, { kind: "timeout", message: `the job ran past its ${p.timeoutMs} ms limit and was stopped` }), p.timeoutMs);
      slot.current = { ...p, timer, started: performance.now() };
      const { module, ...rest } = p.task;
      const first = !slot.modules.has(p.task.moduleKey);
      slot.modules.add(p.task.moduleKey);
      slot.worker.postMessage({ id: p.id, task: first ? p.task : rest });
      p.onStart?.();
    }
  }
}
