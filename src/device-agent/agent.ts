/**
 * The device agent, composed of its parts: it registers once (registration), takes jobs by push or
 * long-poll (transport), keeps the leases of what it holds (lease keeper), runs them (runner),
 * reports results through the outbox, and sends health and its own log lines on a heartbeat;
 * the uplink carries what it tells the control plane. This file only wires the parts together
 * and follows one job from delivery to result.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { mkdir } from "node:fs/promises";
import type { LeasedJob } from "../protocol/agent.js";
import { LIMITS } from "../protocol/job.js";
import { ControlPlaneClient } from "./api-client.js";
import { Outbox } from "./outbox.js";
import { HealthSampler, type DeviceConfig } from "./machine.js";
import { agentLog, ShippedLog, type AgentLog } from "./agent-log.js";
import { loadOrRegister } from "./registration.js";
import { Transport, type TransportMode } from "./transport.js";
import { LeaseKeeper } from "./lease-keeper.js";
import { jobTrace, Runner, toReport } from "./runner.js";
import { Uplink } from "./uplink.js";
import { Heartbeat } from "./heartbeat.js";

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
  /** "auto": WebSocket push, falling back to long-poll when WebSockets are blocked */
  transport: TransportMode;
  /** jobs the agent may hold at once (running plus waiting for a thread) */
  prefetch: number;
  /** deployment instances kept between calls (one thread each) */
  maxInstances: number;
  device: DeviceConfig;
  version: string;
}

export class Agent {
  readonly client: ControlPlaneClient;
  private readonly shippedLog: ShippedLog;
  private readonly log: AgentLog;
  private readonly leases: LeaseKeeper;
  private readonly uplink: Uplink;
  private readonly runner: Runner;
  private readonly outbox: Outbox;
  private readonly heartbeat: Heartbeat;
  private readonly transport: Transport;
  private stopping = false;
  deviceId: string | null = null;

  constructor(readonly opts: AgentOptions, print: AgentLog = agentLog) {
    this.shippedLog = new ShippedLog(print);
    this.log = this.shippedLog.log;
    this.client = new ControlPlaneClient(opts.server);
    this.uplink = new Uplink(this.client, () => this.transport.openLink, () => this.capacity(), this.log);
    this.leases = new LeaseKeeper((update, answerMs) => this.uplink.leases(update, answerMs), this.log);
    this.runner = new Runner(opts, this.client, this.leases, this.uplink, this.log);
    this.outbox = new Outbox(opts.dataDir, (batch) => this.uplink.results(batch), (l, m, f) => this.log(l, m, f));
    this.heartbeat = new Heartbeat({
      health: new HealthSampler(opts.dataDir),
      uplink: this.uplink,
      shippedLog: this.shippedLog,
      jobsRunning: () => this.runner.jobsRunning,
      heldLeases: () => this.leases.refs(),
      stopJobs: (jobIds) => this.runner.cancel(jobIds),
      deploymentsVersion: (version) => this.runner.deployments.noteVersion(version),
      log: this.log,
    });
    this.transport = new Transport(opts, this.client, {
      jobs: (jobs) => {
        for (const job of jobs) void this.runJob(job);
      },
      cancel: (jobIds) => this.runner.cancel(jobIds),
      deployments: (version) => this.runner.deployments.noteVersion(version),
      connected: () => {
        void this.outbox.flush();
        void this.leases.update(); // what was held across the reconnect is renewed (and acked) at once
      },
      credentialRefused: () => {
        process.exitCode = 2;
        void this.stop(0);
      },
      capacity: () => this.capacity(),
    }, this.log);
  }

  async start() {
    await mkdir(this.opts.dataDir, { recursive: true });
    const saved = await loadOrRegister(this.opts, this.client, this.log, () => this.stopping);
    this.deviceId = saved.deviceId;
    this.client.setCredential(saved.credential);
    void this.learnLimits();
    await this.outbox.restore();
    await this.heartbeat.start(this.opts.heartbeatIntervalMs);
    this.leases.start();
    this.transport.start(saved.credential);
    void this.runner.deployments.converge().catch((e) => this.log("warn", "could not apply deployments", { error: String(e) }));
    this.log("info", "agent started", { deviceId: saved.deviceId, server: this.opts.server, poolSize: this.opts.poolSize, transport: this.opts.transport });
  }

  /** How many more jobs the agent takes now. */
  private capacity(): number {
    return Math.max(0, Math.min(LIMITS.maxPollBatch, this.opts.prefetch - this.leases.size));
  }

  /** Stops taking work, lets running jobs finish (up to `graceMs`), sends what it can, keeps the rest on disk. */
  async stop(graceMs = 5_000) {
    this.stopping = true;
    this.transport.stop();
    this.heartbeat.stop();
    this.leases.stop();
    const deadline = Date.now() + graceMs;
    while (this.leases.size > 0 && Date.now() < deadline) await sleep(50);
    await Promise.race([this.transport.finished(), sleep(2_000)]);
    await Promise.race([this.outbox.flush(), sleep(2_000)]);
    this.outbox.stop();
    await this.outbox.persist();
    await this.runner.close();
  }

  /** The request body limit results are batched to, from the control plane itself (the protocol's until then). */
  private async learnLimits() {
    try {
      const { limits } = await this.client.info();
      if (limits.maxJsonBodyBytes) this.outbox.setBodyLimit(limits.maxJsonBodyBytes);
    } catch (e) {
      this.log("debug", "could not read the control plane's limits; using the protocol's", { error: String(e) });
    }
  }

  /** One delivered job, from its lease to its result in the outbox. */
  private async runJob(job: LeasedJob) {
    if (this.leases.holds(job.jobId)) {
      this.leases.redelivered(job);
      // The object counted the redelivery against this agent's credit; it took no new slot.
      this.uplink.credit();
      return;
    }
    if (this.outbox.retoken(job.jobId, job.leaseToken)) {
      // Its run ended here and the result waits in the outbox (the lease ran out meanwhile): the result
      // now quotes the new lease, and the job is not run again.
      this.log("info", "a job whose result is waiting to be sent was delivered again; the result takes the new lease", { jobId: job.jobId, attempt: job.attempt, ...jobTrace(job) });
      this.uplink.credit();
      return;
    }
    this.leases.hold(job);
    this.log("debug", "job started", { jobId: job.jobId, function: job.function, attempt: job.attempt, ...jobTrace(job) });
    const { result, files } = await this.runner.run(job);
    job = this.leases.release(job);
    this.runner.forget(job.jobId);
    this.transport.slotFreed();
    if (!result.ok && result.kind === "canceled") {
      // The control plane already ended it; only the freed capacity is news.
      this.uplink.credit();
      return;
    }
    this.outbox.add(toReport(job, result, files));
    // Successes are routine (debug); failures are worth an operator's eye (warn).
    this.log(result.ok ? "debug" : "warn", "job finished", {
      jobId: job.jobId,
      function: job.function,
      outcome: result.ok ? "succeeded" : result.kind,
      durationMs: Math.round(result.durationMs * 100) / 100,
      ...(result.ok ? {} : { error: result.message }),
      ...jobTrace(job),
    });
  }
}
