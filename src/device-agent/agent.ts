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
import { ApiError, ControlPlaneClient } from "./api-client.js";
import { agentBackoffMs } from "./agent-backoff.js";
import { Outbox } from "./outbox.js";
import { HealthSampler, type DeviceConfig } from "./machine.js";
import { agentLog, ShippedLog, type AgentLog } from "./agent-log.js";
import { loadOrRegister } from "./registration.js";
import { Transport, type TransportMode } from "./transport.js";
import { LeaseKeeper } from "./lease-keeper.js";
import { jobTrace, Runner, toReport } from "./runner.js";
import { Uplink } from "./uplink.js";
import { Heartbeat } from "./heartbeat.js";
import { ServiceSupervisor } from "./services/supervisor.js";
import { ModuleCache } from "./module-cache.js";
import { WASM_PAGE_BYTES } from "../wasm/binary.js";
import { Degraded } from "./degraded.js";
import { CommandGate } from "./command-gate.js";
import type { CommandRef } from "../protocol/agent.js";

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
  /** the most the outbox file may hold while the control plane is away (bytes; see outbox.ts for what overflows first) */
  outboxQuotaBytes?: number;
  /** host environment variables a service's envFrom may pass to its guest (default none) */
  serviceEnvAllow?: string[];
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
  readonly services: ServiceSupervisor;
  private readonly degraded: Degraded;
  private readonly commands: CommandGate;
  /**
   * Handlers of generic bounded commands by kind (services, rollouts register theirs): a handler that
   * throws nacks the command with its message; a kind with no handler is nacked.
   */
  readonly commandHandlers = new Map<string, (body: unknown) => void | Promise<void>>();
  private stopping = false;
  private fencedBy: string | null = null;
  deviceId: string | null = null;

  constructor(readonly opts: AgentOptions, print: AgentLog = agentLog) {
    this.shippedLog = new ShippedLog(print);
    this.log = this.shippedLog.log;
    this.client = new ControlPlaneClient(opts.server);
    this.client.onFenced = (detail) => this.fenced(detail);
    this.uplink = new Uplink(this.client, () => this.transport.openLink, () => this.capacity(), this.log);
    this.leases = new LeaseKeeper((update, answerMs) => this.uplink.leases(update, answerMs), this.log);
    this.runner = new Runner(opts, this.client, this.leases, this.uplink, this.log);
    this.services = new ServiceSupervisor(opts, {
      modules: new ModuleCache(opts.dataDir, this.client, Math.floor((opts.maxMemoryMb * 1024 * 1024) / WASM_PAGE_BYTES)),
      deploymentDir: (deployment, module) => this.runner.deployments.appliedDir(deployment, module),
      fetchDesired: () => this.client.desiredServices(),
      log: this.log,
    });
    this.outbox = new Outbox(opts.dataDir, (batch) => this.uplink.results(batch), (l, m, f) => this.log(l, m, f), opts.outboxQuotaBytes ? { quotaBytes: opts.outboxQuotaBytes } : {});
    this.degraded = new Degraded(this.log, {
      entered: () => this.outbox.setOffline(true),
      recovered: () => {
        this.outbox.setOffline(false);
        void this.outbox.flush();
        void this.runner.deployments.converge().catch((e) => this.log("warn", "could not apply deployments", { error: String(e) }));
        void this.services.converge().catch((e) => this.log("warn", "could not apply services; supervising them as last known", { error: String(e) }));
      },
    });
    this.heartbeat = new Heartbeat({
      health: new HealthSampler(opts.dataDir),
      uplink: this.uplink,
      shippedLog: this.shippedLog,
      jobsRunning: () => this.runner.jobsRunning,
      heldLeases: () => this.leases.refs(),
      stopJobs: (jobIds) => this.runner.cancel(jobIds),
      deploymentsVersion: (version) => this.runner.deployments.noteVersion(version),
      services: () => this.services.actuals(),
      servicesShipped: (sent) => this.services.shipped(sent),
      servicesVersion: (version) => this.services.noteVersion(version),
      store: this.outbox,
      degraded: this.degraded,
      log: this.log,
    });
    this.commands = new CommandGate((acks) => this.uplink.commandAcks(acks), this.log);
    this.transport = new Transport(opts, this.client, {
      jobs: (jobs, cmd) => {
        if (!this.commands.admit(cmd, "jobs")) {
          // Not run late: their leases run out and they come back. The object counted them against the credit.
          this.uplink.credit();
          return;
        }
        for (const job of jobs) void this.runJob(job);
        this.commands.answer(cmd, "acked");
      },
      cancel: (jobIds, cmd) => {
        if (!this.commands.admit(cmd, "cancel")) return; // a late cancel is not applied; heartbeats name ended jobs anyway
        this.runner.cancel(jobIds);
        this.commands.answer(cmd, "acked");
      },
      deployments: (version, cmd) => {
        if (!this.commands.admit(cmd, "deployments")) return; // the heartbeat's answer carries the desired version too
        this.runner.deployments.noteVersion(version);
        this.commands.answer(cmd, "acked");
      },
      services: (version) => this.services.noteVersion(version), // a hint: the heartbeat's answer carries the version too
      command: (kind, body, cmd) => void this.runCommand(kind, body, cmd),
      serverTime: (ms) => this.commands.serverTime(ms),
      connected: () => {
        void this.outbox.flush();
        void this.leases.update(); // what was held across the reconnect is renewed (and acked) at once
        this.commands.resend(); // command answers the control plane has not confirmed yet
      },
      credentialRefused: () => {
        process.exitCode = 2;
        void this.stop(0);
      },
      fenced: (detail) => this.fenced(detail),
      capacity: () => this.capacity(),
      reachable: (yes, reason) => (yes ? this.degraded.reachable() : this.degraded.unreachable(reason ?? "unreachable")),
    }, this.log);
  }

  async start() {
    await mkdir(this.opts.dataDir, { recursive: true });
    const saved = await loadOrRegister(this.opts, this.client, this.log, () => this.stopping);
    this.deviceId = saved.deviceId;
    this.client.setCredential(saved.credential);
    void this.learnLimits();
    // Services first: what runs from before a restart is adopted before anything else happens (no network needed).
    await this.services.open();
    // What is kept on disk next (no network needed: the agent works from it while the control plane is away).
    await this.outbox.restore();
    await this.runner.deployments.loadCached();
    // Then the session: every request after it carries its epoch (one sent without would be refused once any session exists).
    await this.openSession();
    if (this.stopping) return;
    void this.outbox.flush();
    await this.heartbeat.start(this.opts.heartbeatIntervalMs);
    this.leases.start();
    this.transport.start(saved.credential);
    void this.runner.deployments.converge().catch((e) => this.log("warn", "could not apply deployments", { error: String(e) }));
    void this.services.converge().catch((e) => this.log("warn", "could not apply services; supervising them as last known", { error: String(e) }));
    this.log("info", "agent started", { deviceId: saved.deviceId, server: this.opts.server, poolSize: this.opts.poolSize, transport: this.opts.transport });
  }

  /** Opens this process's agent session (retried while the control plane cannot be reached): a newer epoch than any before, taking the device over. */
  private async openSession() {
    for (let failures = 1; !this.stopping; failures++) {
      try {
        const s = await this.client.openSession();
        this.commands.serverTime(s.serverTime);
        this.log("info", "session opened", { epoch: s.epoch, previous: s.previous });
        this.degraded.reachable();
        return;
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) throw e;
        if (!(e instanceof ApiError) || e.status >= 500) this.degraded.unreachable(String(e));
        const delay = agentBackoffMs(failures);
        this.log("warn", "could not open a session; retrying", { error: String(e), retryInMs: Math.round(delay) });
        await sleep(delay);
      }
    }
  }

  /**
   * A newer agent session took this device over (another process holds this device's credential). This
   * one stops at once and for good: no reconnect, no more reports (they would be refused), nothing written
   * to the outbox file. Jobs it held go back to the queue on the control plane. Exit code 3.
   */
  private fenced(detail: string) {
    if (this.fencedBy !== null) return;
    this.fencedBy = detail;
    this.log("error", "another agent process took this device over; stopping", { epoch: this.client.epoch, detail, unsentResults: this.outbox.size });
    process.exitCode = 3;
    this.outbox.abandon();
    void this.stop(0);
  }

  /** A generic bounded command: applied by its kind's handler before its expiry, and answered. */
  private async runCommand(kind: string, body: unknown, cmd: CommandRef) {
    if (!this.commands.admit(cmd, kind)) return;
    const handler = this.commandHandlers.get(kind);
    if (!handler) return this.commands.answer(cmd, "nacked", `this agent has no handler for ${kind} commands`);
    try {
      await handler(body);
      this.commands.answer(cmd, "acked");
    } catch (e) {
      this.commands.answer(cmd, "nacked", e instanceof Error ? e.message : String(e));
    }
  }

  /** How many more jobs the agent takes now. */
  private capacity(): number {
    if (this.outbox.overQuota) return 0; // results alone fill the outbox's quota: no new work until they are delivered
    return Math.max(0, Math.min(LIMITS.maxPollBatch, this.opts.prefetch - this.leases.size));
  }

  /** Stops taking work, lets running jobs finish (up to `graceMs`), sends what it can, keeps the rest on disk. */
  async stop(graceMs = 5_000) {
    this.stopping = true;
    this.transport.stop();
    this.heartbeat.stop();
    this.services.stop(); // services keep running: the next agent adopts them
    this.leases.stop();
    if (this.fencedBy === null) void this.commands.flush();
    this.commands.stop();
    const deadline = Date.now() + graceMs;
    while (this.leases.size > 0 && Date.now() < deadline) await sleep(50);
    await Promise.race([this.transport.finished(), sleep(2_000)]);
    if (this.fencedBy === null) {
      await Promise.race([this.outbox.flush(), sleep(2_000)]);
      this.outbox.stop();
      await this.outbox.persist();
    }
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
