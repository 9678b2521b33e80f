/**
 * The device agent: registers once, then keeps a long poll open to its device
 * object, runs what it is leased in the worker pool, acknowledges starts,
 * reports results through the outbox and sends health on a heartbeat.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { LeasedJob, LeaseRef, ResultReport } from "../protocol/agent.js";
import { WASM_PAGE_BYTES } from "../wasm/binary.js";
import { ApiError, ControlPlaneClient } from "./api-client.js";
import { ModuleCache, ModuleRejected } from "./module-cache.js";
import { WorkerPool } from "./pool.js";
import { Outbox } from "./outbox.js";
import { describeDevice, HealthSampler, type DeviceConfig } from "./machine.js";
import type { ExecResult } from "./execute.js";
import type { FailureKind } from "../protocol/job.js";

export interface AgentOptions {
  server: string;
  /** a register key; needed only until the agent has its device credential */
  registerToken?: string;
  dataDir: string;
  poolSize: number;
  maxMemoryMb: number;
  maxOutputBytes: number;
  heartbeatIntervalMs: number;
  pollWaitSeconds: number;
  device: DeviceConfig;
  version: string;
}

type Saved = { server: string; deviceId: string; credential: string };
type Level = "debug" | "info" | "warn" | "error";

export function agentLog(level: Level, msg: string, fields: Record<string, unknown> = {}) {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }) + "\n");
}

/** Starts are acknowledged after this delay, unless the job has already ended: fast jobs need no ack. */
const ACK_DELAY_MS = 200;

export class Agent {
  readonly client: ControlPlaneClient;
  private readonly pool: WorkerPool;
  private readonly modules: ModuleCache;
  private readonly outbox: Outbox;
  private readonly health: HealthSampler;
  private readonly leases = new Map<string, LeasedJob>();
  private readonly unacked = new Map<string, LeaseRef>();
  private ackTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private pollAbort = new AbortController();
  private slotWaiters: (() => void)[] = [];
  private loop: Promise<void> | null = null;
  deviceId: string | null = null;

  constructor(readonly opts: AgentOptions, private readonly log = agentLog) {
    this.client = new ControlPlaneClient(opts.server);
    this.pool = new WorkerPool(opts.poolSize);
    this.modules = new ModuleCache(opts.dataDir, this.client, Math.floor((opts.maxMemoryMb * 1024 * 1024) / WASM_PAGE_BYTES));
    this.outbox = new Outbox(opts.dataDir, (batch) => this.client.report(batch), (l, m, f) => this.log(l, m, f));
    this.health = new HealthSampler(opts.dataDir);
  }

  async start() {
    await mkdir(this.opts.dataDir, { recursive: true });
    const saved = await this.loadOrRegister();
    this.deviceId = saved.deviceId;
    this.client.setCredential(saved.credential);
    await this.outbox.restore();
    await this.beat();
    this.heartbeatTimer = setInterval(() => void this.beat(), this.opts.heartbeatIntervalMs);
    this.loop = this.pollLoop();
    this.log("info", "agent started", { deviceId: saved.deviceId, server: this.opts.server, poolSize: this.opts.poolSize });
  }

  /** Stops taking work, lets running jobs finish (up to `graceMs`), sends what it can, keeps the rest on disk. */
  async stop(graceMs = 5_000) {
    this.stopping = true;
    this.pollAbort.abort();
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    const deadline = Date.now() + graceMs;
    while (this.leases.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await this.loop?.catch(() => undefined);
    await Promise.race([this.outbox.flush(), new Promise((r) => setTimeout(r, 2_000))]);
    this.outbox.stop();
    await this.outbox.persist();
    await this.pool.close();
  }

  private async loadOrRegister(): Promise<Saved> {
    const file = join(this.opts.dataDir, "credential.json");
    const existing = await readFile(file, "utf8").catch(() => null);
    if (existing) return JSON.parse(existing) as Saved;
    if (!this.opts.registerToken) throw new Error(`no device credential in ${file} and no register token (--token) to get one`);
    const description = describeDevice(this.opts.device, this.opts.version, this.opts.poolSize);
    const reg = await this.client.register(this.opts.registerToken, { ...(this.opts.device.name ? { name: this.opts.device.name } : {}), description });
    const saved: Saved = { server: this.opts.server, deviceId: reg.deviceId, credential: reg.credential };
    await writeFile(file, JSON.stringify(saved, null, 2), { mode: 0o600 });
    this.log("info", "registered", { deviceId: reg.deviceId });
    return saved;
  }

  private async beat() {
    try {
      const health = await this.health.sample(this.pool.running);
      const runningJobs = [...this.leases.values()].map((l) => ({ jobId: l.jobId, leaseToken: l.leaseToken }));
      const res = await this.client.heartbeat({ health, runningJobs });
      for (const jobId of res.cancel) {
        if (this.pool.cancel(jobId)) this.log("info", "stopped a job the control plane no longer leases to us", { jobId });
      }
    } catch (e) {
      this.log("warn", "heartbeat failed", { error: String(e) });
    }
  }

  private async pollLoop() {
    let failures = 0;
    while (!this.stopping) {
      const free = this.pool.size - this.pool.load;
      if (free <= 0) {
        await new Promise<void>((r) => this.slotWaiters.push(r));
        continue;
      }
      try {
        const delivery = await this.client.poll(this.opts.pollWaitSeconds, free, this.pollAbort.signal);
        failures = 0;
        for (const job of delivery.jobs) void this.runJob(job);
      } catch (e) {
        if (this.stopping) break;
        if (e instanceof ApiError && e.status === 401) {
          this.log("error", "the control plane refused this device's credential; re-register with a new data dir", { error: String(e) });
          process.exitCode = 2;
          void this.stop(0);
          break;
        }
        failures++;
        const delay = Math.min(30_000, 250 * 2 ** Math.min(failures, 7)) * (0.5 + Math.random() / 2);
        this.log("warn", "poll failed; retrying", { error: String(e), retryInMs: Math.round(delay) });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private async runJob(job: LeasedJob) {
    this.leases.set(job.jobId, job);
    this.scheduleAck(job);
    const result = await this.execute(job);
    this.leases.delete(job.jobId);
    this.unacked.delete(job.jobId);
    for (const wake of this.slotWaiters.splice(0)) wake();
    if (!result.ok && result.kind === "canceled") return; // the control plane already ended it
    this.outbox.add(toReport(job, result));
    this.log(result.ok ? "info" : "warn", "job finished", {
      jobId: job.jobId,
      function: job.function,
      outcome: result.ok ? "succeeded" : result.kind,
      durationMs: Math.round(result.durationMs * 100) / 100,
      ...(result.ok ? {} : { error: result.message }),
    });
  }

  private async execute(job: LeasedJob): Promise<ExecResult> {
    const failed = (kind: FailureKind, message: string): ExecResult => ({
      ok: false, kind, message, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 0,
    });
    let loaded;
    try {
      loaded = await this.modules.get(job.module);
    } catch (e) {
      return e instanceof ModuleRejected ? failed(e.kind, e.message) : failed("module-unavailable", String(e));
    }
    const fn = loaded.info.exports.find((x) => x.kind === "function" && x.name === job.function);
    if (!fn?.signature) return failed("missing-function", `the module exports no function "${job.function}"`);
    const sandboxDir = join(this.opts.dataDir, "sandbox", job.module);
    await mkdir(sandboxDir, { recursive: true });
    return this.pool.run(
      job.jobId,
      { module: loaded.module, function: job.function, signature: fn.signature, args: job.args, sandboxDir, maxOutputBytes: this.opts.maxOutputBytes },
      job.timeoutMs,
    );
  }

  private scheduleAck(job: LeasedJob) {
    this.unacked.set(job.jobId, { jobId: job.jobId, leaseToken: job.leaseToken });
    this.ackTimer ??= setTimeout(() => {
      this.ackTimer = null;
      const started = [...this.unacked.values()];
      this.unacked.clear();
      if (started.length === 0) return;
      this.client.ack(started).catch((e) => this.log("warn", "ack failed (the lease may be redelivered)", { error: String(e) }));
    }, ACK_DELAY_MS);
  }
}

function toReport(job: LeasedJob, r: ExecResult): ResultReport {
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
    outcome: r.ok ? "succeeded" : r.kind === "timeout" ? "timed_out" : "failed",
    result: { value: r.ok ? r.value : null, ...captured },
    error: r.ok ? null : { kind: r.kind, message: r.message },
  };
}
