/**
 * Running what the agent is leased: a job in the shared worker pool, a deployment's call in its
 * sandbox directory (and, for instance: "deployment", in a kept instance of its own), and stopping
 * jobs wherever they run when the control plane cancels them.
 */
import { formatTraceparent, newSpanId, parseTraceparent } from "../core/trace.js";
import { lstat, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { LeasedJob, ResultReport } from "../protocol/agent.js";
import type { CallContext } from "../protocol/deployment.js";
import type { FailureKind } from "../protocol/job.js";
import { WASM_PAGE_BYTES } from "../wasm/binary.js";
import type { ControlPlaneClient } from "./api-client.js";
import { DOWNLOAD_RETRY, retryTransient } from "./transient-retry.js";
import { ModuleCache, ModuleRejected } from "./module-cache.js";
import { WorkerPool } from "./pool.js";
import { DeploymentSet } from "./deployments.js";
import type { ExecResult } from "./execute.js";
import type { LeaseKeeper } from "./lease-keeper.js";
import type { Uplink } from "./uplink.js";
import type { AgentLog } from "./agent-log.js";

export interface RunnerOptions {
  dataDir: string;
  poolSize: number;
  maxMemoryMb: number;
  maxOutputBytes: number;
  /** deployment instances kept between calls (one thread each) */
  maxInstances: number;
}

export type OutputFile = { name: string; size: number };
export type RunOutcome = { result: ExecResult; files: OutputFile[] };

/** Output files larger than this are refused (the control plane would refuse them too). */
const MAX_OUTPUT_FILE_BYTES = 16 * 1024 * 1024;

export class Runner {
  private readonly pool: WorkerPool;
  private readonly modules: ModuleCache;
  readonly deployments: DeploymentSet;
  /** one single-thread pool per kept instance (a deployment's module with instance: "deployment") */
  private readonly instancePools = new Map<string, WorkerPool>();
  private readonly sandboxes = new Set<string>();
  /** held jobs canceled before they reached a pool */
  private readonly canceledBeforeStart = new Set<string>();

  constructor(
    private readonly opts: RunnerOptions,
    private readonly client: ControlPlaneClient,
    private readonly leases: LeaseKeeper,
    private readonly uplink: Uplink,
    private readonly log: AgentLog,
  ) {
    this.pool = new WorkerPool(opts.poolSize);
    this.modules = new ModuleCache(opts.dataDir, client, Math.floor((opts.maxMemoryMb * 1024 * 1024) / WASM_PAGE_BYTES));
    this.deployments = new DeploymentSet(opts.dataDir, client, this.modules, log, (id) => this.retireInstances(id));
  }

  /** Jobs running in threads of the shared pool now. */
  get jobsRunning(): number {
    return this.pool.running;
  }

  /** Runs a held job (a deployment's call, or a plain job) to its end. */
  run(job: LeasedJob): Promise<RunOutcome> {
    return job.call ? this.executeCall(job, job.call) : this.execute(job).then((result) => ({ result, files: [] }));
  }

  /** The job's run is over: a cancel that came before it started is no longer news. */
  forget(jobId: string) {
    this.canceledBeforeStart.delete(jobId);
  }

  /** Stops jobs wherever they run: the shared pool, or a deployment's kept instance (which ends with its thread). */
  cancel(jobIds: string[]) {
    for (const jobId of jobIds) {
      if (this.pool.cancel(jobId)) {
        this.log("info", "stopped a job the control plane no longer leases to us", { jobId });
        continue;
      }
      let stopped = false;
      for (const [key, pool] of this.instancePools) {
        if (!pool.cancel(jobId)) continue;
        this.log("info", "stopped a job the control plane no longer leases to us", { jobId, instance: key });
        stopped = true;
        break;
      }
      // Held but in no pool yet (a call waiting for its deployment's instance, or its files): it must not start.
      if (!stopped && this.leases.holds(jobId)) this.canceledBeforeStart.add(jobId);
    }
  }

  async close() {
    await this.pool.close();
    await Promise.all([...this.instancePools.values()].map((p) => p.close()));
  }

  /** A deployment left (or was redeployed): its kept instances end, so the next call starts afresh. */
  private retireInstances(deployment: string) {
    for (const [key, pool] of this.instancePools) {
      if (key.startsWith(`${deployment}/`)) {
        this.instancePools.delete(key);
        void pool.close();
      }
    }
  }

  /**
   * A call of a deployed function: in its deployment's sandbox directory (one call
   * at a time per module), input files written there first, declared output files
   * uploaded afterwards (before the result, so a result never names a missing file).
   */
  private async executeCall(job: LeasedJob, call: CallContext): Promise<RunOutcome> {
    let dir: string;
    try {
      dir = await this.deployments.ensure(call);
    } catch (e) {
      return { result: failedResult("module-unavailable", String(e instanceof Error ? e.message : e)), files: [] };
    }
    const key = `${call.deployment}/${call.generation}/${call.module}`;
    return this.deployments.serialize(key, async () => {
      try {
        for (const name of call.inputs) await writeFile(join(dir, name), await retryTransient(() => this.client.inputFile(job.jobId, name), DOWNLOAD_RETRY));
      } catch (e) {
        return { result: failedResult("module-unavailable", `could not fetch the input files: ${String(e)}`), files: [] };
      }
      const result = await this.execute(job, dir, call.instance === "deployment" ? key : undefined);
      const files: OutputFile[] = [];
      if (!result.ok) return { result, files };
      try {
        for (const out of call.outputs) {
          const path = join(dir, out.name);
          // lstat, not stat: only a regular file in the sandbox is uploaded, never what a link points at
          // (node's WASI already refuses links out of the sandbox; this does not rely on it).
          const st = await lstat(path).catch(() => null);
          if (!st) continue; // absent: the function wrote no such file (here, ever)
          if (!st.isFile()) {
            this.log("warn", "an output is not a regular file; not uploaded", { jobId: job.jobId, file: out.name });
            continue;
          }
          const size = st.size;
          if (size > MAX_OUTPUT_FILE_BYTES) return { result: failedResult("internal", `output file ${out.name} is ${size} bytes; the limit is ${MAX_OUTPUT_FILE_BYTES}`), files: [] };
          await this.client.putOutput(job.jobId, this.leases.current(job).leaseToken, out.name, await readFile(path));
          files.push({ name: out.name, size });
        }
      } catch (e) {
        return { result: failedResult("internal", `could not upload the output files: ${String(e)}`), files: [] };
      }
      return { result, files };
    });
  }

  /**
   * The single-thread pool that keeps the instance `key` between calls. Each costs a thread, so at
   * most `maxInstances` are kept: beyond that the least recently used idle one ends (its state with it).
   */
  private instancePool(key: string): WorkerPool {
    let pool = this.instancePools.get(key);
    if (pool) {
      this.instancePools.delete(key); // re-inserted below: the map's order is least recently used first
    } else {
      pool = new WorkerPool(1, undefined, Number.POSITIVE_INFINITY);
      for (const [oldKey, old] of this.instancePools) {
        if (this.instancePools.size < this.opts.maxInstances) break;
        if (old.load > 0) continue;
        this.instancePools.delete(oldKey);
        void old.close();
        this.log("info", "ended a kept instance to stay within --max-instances", { instance: oldKey });
      }
    }
    this.instancePools.set(key, pool);
    return pool;
  }

  private async execute(job: LeasedJob, deploymentDir?: string, instanceKey?: string): Promise<ExecResult> {
    let loaded;
    try {
      loaded = await this.modules.get(job.module);
    } catch (e) {
      return e instanceof ModuleRejected ? failedResult(e.kind, e.message, true) : failedResult("module-unavailable", String(e));
    }
    const fn = loaded.info.exports.find((x) => x.kind === "function" && x.name === job.function);
    if (!fn?.signature) return failedResult("missing-function", `the module exports no function "${job.function}"`);
    const sandboxDir = deploymentDir ?? join(this.opts.dataDir, "sandbox", job.module);
    if (!this.sandboxes.has(sandboxDir)) {
      await mkdir(sandboxDir, { recursive: true });
      this.sandboxes.add(sandboxDir);
    }
    if (this.canceledBeforeStart.has(job.jobId)) return failedResult("canceled", "canceled before it started");
    const pool = instanceKey ? this.instancePool(instanceKey) : this.pool;
    return pool.run(
      job.jobId,
      {
        module: loaded.module, moduleKey: job.module, function: job.function, signature: fn.signature, args: job.args, sandboxDir, maxOutputBytes: this.opts.maxOutputBytes,
        ...(instanceKey ? { instanceKey } : {}),
      },
      job.timeoutMs,
      {
        onStart: () => this.leases.started(job),
        onLog: (lines) => this.uplink.jobOutput({ jobId: job.jobId, leaseToken: this.leases.current(job).leaseToken, lines }),
      },
    );
  }
}

/** A job that ended before it ran (`rejected`: it cannot run on this device at all). */
const failedResult = (kind: FailureKind, message: string, rejected = false): ExecResult => ({
  ok: false, kind, message, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 0, logs: [], ...(rejected ? { rejected } : {}),
});

/** A job's trace as the agent's log lines carry it: the submitting request's trace id (docs/observability.md). */
export function jobTrace(job: LeasedJob): { trace_id?: string; parent_span_id?: string } {
  const t = parseTraceparent(job.traceparent);
  return t ? { trace_id: t.traceId, parent_span_id: t.spanId } : {};
}

/** The traceparent a result carries back: the job's trace, with a span of the agent's run. */
function resultTraceparent(job: LeasedJob): { traceparent?: string } {
  const t = parseTraceparent(job.traceparent);
  return t ? { traceparent: formatTraceparent({ ...t, spanId: newSpanId() }) } : {};
}

/** The result report of a run, quoting the lease the agent held last. */
export function toReport(job: LeasedJob, r: ExecResult, files: OutputFile[] = []): ResultReport {
  const captured = {
    exitCode: r.exitCode,
    stdout: r.stdout,
    stderr: r.stderr,
    stdoutTruncated: r.stdoutTruncated,
    stderrTruncated: r.stderrTruncated,
    durationMs: r.durationMs,
  };
  return {
    jobId: job.jobId,
    leaseToken: job.leaseToken,
    outcome: r.ok ? "succeeded" : r.kind === "timeout" ? "timed_out" : r.rejected ? "rejected" : "failed",
    result: { value: r.ok ? r.value : null, ...captured, ...(files.length > 0 ? { files } : {}) },
    error: r.ok ? null : { kind: r.kind, message: r.message },
    logs: r.logs,
    ...resultTraceparent(job),
  };
}
