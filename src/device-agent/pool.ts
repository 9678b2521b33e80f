/**
 * A pool of worker threads, started on demand. Tasks go to a thread in small
 * batches (one message for several calls, which is what limits bulk work), and
 * each task still has its own time limit: the timer restarts when the previous
 * task's result arrives, since the next one starts right then. A task that
 * overruns is stopped by terminating its thread (the only way to stop a Wasm
 * loop); the tasks queued behind it in that thread go back to the head of the
 * queue, and the pool keeps serving.
 */
import { Worker } from "node:worker_threads";
import type { ExecResult, ExecTask } from "./execute.js";
import type { LogLine } from "../protocol/job.js";
import { agentFile } from "./agent-files.js";

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
  /** tasks sent to this thread, in order: the first one is running */
  batch: Pending[];
  timer: NodeJS.Timeout | null;
  startedAt: number;
  idleSince: number;
  /** module keys this thread already holds */
  modules: Set<string>;
  /** tasks of the batch canceled before they started: their results are dropped */
  canceled: Set<number>;
}

/** A thread idle this long is ended (an idle agent keeps little memory); the next job starts one again. */
export const THREAD_IDLE_MS = 30_000;
/** At most this many tasks travel to a thread in one message. */
export const MAX_BATCH = 16;

const EMPTY = { stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, logs: [] };
const ended = (kind: "timeout" | "canceled" | "internal", message: string, durationMs = 0): ExecResult => ({ ok: false, kind, message, exitCode: null, durationMs, ...EMPTY });

export class WorkerPool {
  private slots: Slot[] = [];
  private queue: Pending[] = [];
  private nextId = 1;
  private closed = false;
  private readonly reaper: NodeJS.Timeout;

  constructor(readonly size: number, private readonly workerUrl = agentFile("pool-worker.js"), private readonly idleMs = THREAD_IDLE_MS) {
    this.reaper = setInterval(() => this.endIdleThreads(), Math.min(5_000, idleMs));
    this.reaper.unref();
  }

  /** Tasks not yet finished: waiting for a thread or sent to one. */
  get load(): number {
    return this.queue.length + this.slots.reduce((n, s) => n + s.batch.length, 0);
  }

  /** Threads busy now. */
  get running(): number {
    return this.slots.filter((s) => s.batch.length > 0).length;
  }

  get threads(): number {
    return this.slots.length;
  }

  /** Runs the task when a thread is free; `onStart` is called when it starts, `onLog` with output lines as they come. */
  run(key: string, task: ExecTask, timeoutMs: number, hooks: { onStart?: () => void; onLog?: (lines: LogLine[]) => void } = {}): Promise<ExecResult> {
    if (this.closed) return Promise.resolve(ended("internal", "the agent is shutting down"));
    return new Promise((resolve) => {
      this.queue.push({ id: this.nextId++, key, task, timeoutMs, resolve, ...hooks });
      this.pump();
    });
  }

  /** Stops a task wherever it is; it ends as "canceled". */
  cancel(key: string): boolean {
    const qi = this.queue.findIndex((p) => p.key === key);
    if (qi >= 0) {
      this.queue.splice(qi, 1)[0]!.resolve(ended("canceled", "canceled"));
      return true;
    }
    for (const slot of this.slots) {
      const i = slot.batch.findIndex((p) => p.key === key);
      if (i === 0) {
        this.recycle(slot, "canceled", "canceled while running");
        return true;
      }
      if (i > 0) {
        slot.canceled.add(slot.batch[i]!.id);
        return true;
      }
    }
    return false;
  }

  async close() {
    this.closed = true;
    clearInterval(this.reaper);
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private endIdleThreads() {
    const now = Date.now();
    for (const s of this.slots.filter((s) => s.batch.length === 0 && now - s.idleSince > this.idleMs)) {
      this.slots = this.slots.filter((x) => x !== s);
      void s.worker.terminate();
    }
  }

  private spawn(): Slot {
    const slot: Slot = { worker: new Worker(this.workerUrl), batch: [], timer: null, startedAt: 0, idleSince: Date.now(), modules: new Set(), canceled: new Set() };
    slot.worker.on("message", (msg: { id: number; result?: ExecResult; log?: LogLine[] }) => {
      const cur = slot.batch[0];
      if (!cur || cur.id !== msg.id) return;
      if (msg.log) return cur.onLog?.(msg.log);
      if (!msg.result) return;
      if (slot.timer) clearTimeout(slot.timer);
      slot.batch.shift();
      const dropped = slot.canceled.delete(cur.id);
      cur.resolve(dropped ? ended("canceled", "canceled before it started") : msg.result);
      if (slot.batch.length > 0) this.startNext(slot);
      else {
        slot.timer = null;
        slot.idleSince = Date.now();
      }
      this.pump();
    });
    slot.worker.on("error", (err) => {
      if (slot.batch.length > 0) this.recycle(slot, "internal", `the worker thread failed: ${err.message}`);
    });
    // A thread that ends while idle (crash, reaped) just leaves the pool; work starts a new one.
    slot.worker.on("exit", () => {
      if (slot.batch.length === 0) this.slots = this.slots.filter((s) => s !== slot);
    });
    slot.worker.unref();
    return slot;
  }

  /** The first task of the slot's batch starts now: its hook, its own time limit. */
  private startNext(slot: Slot) {
    const p = slot.batch[0]!;
    slot.startedAt = performance.now();
    slot.timer = setTimeout(() => this.recycle(slot, "timeout", `the job ran past its ${p.timeoutMs} ms limit and was stopped`), p.timeoutMs);
    if (!slot.canceled.has(p.id)) p.onStart?.();
  }

  /** Ends the running task with `why` and the thread with it; the rest of its batch goes back to the queue. */
  private recycle(slot: Slot, kind: "timeout" | "canceled" | "internal", message: string) {
    if (slot.timer) clearTimeout(slot.timer);
    void slot.worker.terminate();
    this.slots = this.slots.filter((s) => s !== slot);
    const [running, ...rest] = slot.batch;
    slot.batch = [];
    running?.resolve(ended(kind, message, performance.now() - slot.startedAt));
    for (const p of rest.filter((p) => slot.canceled.has(p.id))) p.resolve(ended("canceled", "canceled before it started"));
    this.queue = [...rest.filter((p) => !slot.canceled.has(p.id)), ...this.queue];
    this.pump();
  }

  private pump() {
    while (this.queue.length > 0 && !this.closed) {
      let slot = this.slots.find((s) => s.batch.length === 0);
      if (!slot) {
        if (this.slots.length >= this.size) return;
        slot = this.spawn();
        this.slots.push(slot);
      }
      // Share what waits among the threads that can take it now.
      const free = this.slots.filter((s) => s.batch.length === 0).length + (this.size - this.slots.length);
      const take = this.queue.splice(0, Math.min(MAX_BATCH, Math.ceil(this.queue.length / Math.max(1, free))));
      slot.batch = take;
      slot.canceled.clear();
      const sent = take.map((p) => {
        const { module, ...rest } = p.task;
        const first = !slot!.modules.has(p.task.moduleKey);
        slot!.modules.add(p.task.moduleKey);
        return { id: p.id, task: first ? p.task : rest };
      });
      slot.worker.postMessage({ batch: sent });
      this.startNext(slot);
    }
  }
}
