/**
 * The device agent: registers once, then keeps a long poll open to its device
 * object, runs what it is leased in the worker pool, acknowledges starts,
 * reports results through the outbox and sends health on a heartbeat.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MAX_SHIPPED_AGENT_LINES, type AgentLogLine, type LeasedJob, type LeaseRef, type LogBatch, type ResultReport } from "../protocol/agent.js";
import { WASM_PAGE_BYTES } from "../wasm/binary.js";
import { ApiError, ControlPlaneClient } from "./api-client.js";
import { ModuleCache, ModuleRejected } from "./module-cache.js";
import { WorkerPool } from "./pool.js";
import { Outbox } from "./outbox.js";
import { describeDevice, HealthSampler, type DeviceConfig } from "./machine.js";
import type { ExecResult } from "./execute.js";
import { SocketLink, UpgradeRefused } from "./socket-link.js";
import { DeploymentSet } from "./deployments.js";
import type { CallContext } from "../protocol/deployment.js";
import { lstat } from "node:fs/promises";
import { LIMITS, type FailureKind } from "../protocol/job.js";
import { agentBackoffMs } from "./agent-backoff.js";

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

export type TransportMode = "auto" | "ws" | "poll";
type Saved = { server: string; deviceId: string; credential: string };
export type Level = "debug" | "info" | "warn" | "error";

const RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold = RANK.info;
export function setAgentLogLevel(level: Level) {
  threshold = RANK[level];
}

export function agentLog(level: Level, msg: string, fields: Record<string, unknown> = {}) {
  if (RANK[level] < threshold) return;
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }) + "\n");
}

/** Starts are acknowledged after this delay, unless the job has already ended: fast jobs need no ack. */
const ACK_DELAY_MS = 200;
/** An ack not answered is sent again this soon (and an ack over the WebSocket is given up on after ACK_ANSWER_MS). */
const ACK_RETRY_MS = 500;
const ACK_ANSWER_MS = 1_500;
/** Every lease held (waiting or running) is renewed this often: well inside the control plane's ack window. */
const RENEW_INTERVAL_MS = 2_000;
/** After falling back to long-poll, try the WebSocket again this much later. */
const WS_RETRY_AFTER_MS = 60_000;
/** While the control plane cannot be reached, the WebSocket is retried at least this often. */
const WS_RECONNECT_MAX_MS = 5_000;
/** Log lines of a running job go in requests of at most this much JSON (well under the body limit). */
const MAX_LOG_BATCH_BYTES = 64 * 1024;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Agent {
  readonly client: ControlPlaneClient;
  private readonly pool: WorkerPool;
  private readonly modules: ModuleCache;
  private readonly outbox: Outbox;
  private readonly health: HealthSampler;
  private readonly deployments: DeploymentSet;
  /** one single-thread pool per kept instance (a deployment's module with instance: "deployment") */
  private readonly instancePools = new Map<string, WorkerPool>();
  /** every job the agent holds: waiting for a thread or running */
  private readonly leases = new Map<string, LeasedJob>();
  private readonly running = new Set<string>();
  /** started jobs whose start the control plane has not acknowledged yet */
  private readonly unacked = new Map<string, LeaseRef>();
  private ackTimer: NodeJS.Timeout | null = null;
  private leaseUpdateInFlight = false;
  private leaseUpdateAgain = false;
  /** held jobs canceled before they reached a pool */
  private readonly canceledBeforeStart = new Set<string>();
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private link: SocketLink | null = null;
  private readonly sandboxes = new Set<string>();
  private logsInFlight: Promise<void> = Promise.resolve();
  private credential = "";
  private stopping = false;
  private pollAbort = new AbortController();
  private slotWaiters: (() => void)[] = [];
  private loop: Promise<void> | null = null;
  deviceId: string | null = null;

  /** recent log lines not yet shipped to the control plane (runner.logs), oldest dropped first */
  private readonly unshipped: AgentLogLine[] = [];
  private readonly log: typeof agentLog;

  constructor(readonly opts: AgentOptions, print = agentLog) {
    this.log = (level, msg, fields = {}) => {
      if (RANK[level] < threshold) return;
      print(level, msg, fields);
      this.unshipped.push({ at: Date.now(), level, msg: msg.slice(0, 500), ...(Object.keys(fields).length ? { fields: JSON.stringify(fields).slice(0, 2000) } : {}) });
      if (this.unshipped.length > MAX_SHIPPED_AGENT_LINES) this.unshipped.shift();
    };
    this.client = new ControlPlaneClient(opts.server);
    this.pool = new WorkerPool(opts.poolSize);
    this.modules = new ModuleCache(opts.dataDir, this.client, Math.floor((opts.maxMemoryMb * 1024 * 1024) / WASM_PAGE_BYTES));
    this.outbox = new Outbox(opts.dataDir, (batch) => this.sendResults(batch), (l, m, f) => this.log(l, m, f));
    this.health = new HealthSampler(opts.dataDir);
    this.deployments = new DeploymentSet(opts.dataDir, this.client, this.modules, (l, m, f) => this.log(l, m, f), (id) => this.retireInstances(id));
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

  async start() {
    await mkdir(this.opts.dataDir, { recursive: true });
    const saved = await this.loadOrRegister();
    this.deviceId = saved.deviceId;
    this.credential = saved.credential;
    this.client.setCredential(saved.credential);
    void this.learnLimits();
    await this.outbox.restore();
    await this.beat();
    this.heartbeatTimer = setInterval(() => void this.beat(), this.opts.heartbeatIntervalMs);
    this.renewTimer = setInterval(() => void this.updateLeases(), RENEW_INTERVAL_MS);
    this.loop = this.transportLoop();
    void this.deployments.converge().catch((e) => this.log("warn", "could not apply deployments", { error: String(e) }));
    this.log("info", "agent started", { deviceId: saved.deviceId, server: this.opts.server, poolSize: this.opts.poolSize, transport: this.opts.transport });
  }

  /** How many more jobs the agent takes now. */
  private capacity(): number {
    return Math.max(0, Math.min(LIMITS.maxPollBatch, this.opts.prefetch - this.leases.size));
  }

  /** Stops taking work, lets running jobs finish (up to `graceMs`), sends what it can, keeps the rest on disk. */
  async stop(graceMs = 5_000) {
    this.stopping = true;
    this.pollAbort.abort();
    this.link?.close();
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.renewTimer) clearInterval(this.renewTimer);
    const deadline = Date.now() + graceMs;
    while (this.leases.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await Promise.race([this.loop?.catch(() => undefined), sleep(2_000)]);
    await Promise.race([this.outbox.flush(), new Promise((r) => setTimeout(r, 2_000))]);
    this.outbox.stop();
    await this.outbox.persist();
    await this.pool.close();
    await Promise.all([...this.instancePools.values()].map((p) => p.close()));
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

  private async loadOrRegister(): Promise<Saved> {
    const file = join(this.opts.dataDir, "credential.json");
    const existing = await readFile(file, "utf8").catch(() => null);
    if (existing) return JSON.parse(existing) as Saved;
    if (!this.opts.registerToken) throw new Error(`no device credential in ${file} and no register token (--token) to get one`);
    const description = describeDevice(this.opts.device, this.opts.version, this.opts.poolSize);
    const reg = await this.register(this.opts.registerToken, { ...(this.opts.device.name ? { name: this.opts.device.name } : {}), description });
    const saved: Saved = { server: this.opts.server, deviceId: reg.deviceId, credential: reg.credential };
    await writeFile(file, JSON.stringify(saved, null, 2), { mode: 0o600 });
    this.log("info", "registered", { deviceId: reg.deviceId });
    return saved;
  }

  /**
   * Registers, retrying for as long as it takes when the control plane cannot be reached or answers
   * with trouble of its own (no network condition ends the agent); a refusal of the key itself is final.
   */
  private async register(token: string, body: Parameters<ControlPlaneClient["register"]>[1]) {
    for (let failures = 1; ; failures++) {
      try {
        return await this.client.register(token, body);
      } catch (e) {
        if (e instanceof ApiError && e.permanent) throw e;
        if (this.stopping) throw e;
        const delay = agentBackoffMs(failures);
        this.log("warn", "could not register; retrying", { error: String(e), retryInMs: Math.round(delay) });
        await sleep(delay);
      }
    }
  }

  private async beat() {
    try {
      const health = await this.health.sample(this.pool.running);
      const runningJobs = [...this.leases.values()].map((l) => ({ jobId: l.jobId, leaseToken: l.leaseToken }));
      const logs = this.unshipped.slice(0, MAX_SHIPPED_AGENT_LINES);
      let cancel: string[];
      let version: number | undefined;
      if (this.link?.isOpen) {
        const reply = await this.link.request<"heartbeat">({ t: "heartbeat", health, runningJobs, logs });
        cancel = reply.t === "heartbeat-ack" ? reply.cancel : [];
        version = reply.t === "heartbeat-ack" ? reply.deployments : undefined;
      } else {
        ({ cancel, deployments: version } = await this.client.heartbeat({ health, runningJobs, logs }));
      }
      this.deployments.noteVersion(version);
      this.unshipped.splice(0, Math.min(logs.length, this.unshipped.length));
      this.stopJobs(cancel);
    } catch (e) {
      this.log("warn", "heartbeat failed", { error: String(e) });
    }
  }

  /** Stops jobs wherever they run: the shared pool, or a deployment's kept instance (which ends with its thread). */
  private stopJobs(jobIds: string[]) {
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
      if (!stopped && this.leases.has(jobId)) this.canceledBeforeStart.add(jobId);
    }
  }

  /** WebSocket push first; in "auto" mode, long-poll while WebSockets do not get through. */
  private async transportLoop() {
    let failures = 0;
    let refusals = 0;
    while (!this.stopping) {
      if (this.opts.transport === "poll") {
        await this.pollLoop(Number.POSITIVE_INFINITY);
        continue;
      }
      const outcome = await this.runSocket();
      if (this.stopping) break;
      if (outcome === "opened") {
        failures = refusals = 0;
        await sleep(100 + Math.random() * 200);
        continue;
      }
      failures++;
      // Only an answer without the upgrade says WebSockets are blocked; a control plane that is down
      // (refused, reset, timed out) is waited for on the WebSocket, so push resumes as soon as it is back.
      if (outcome === "refused") refusals++;
      if (this.opts.transport === "ws" || refusals < 2) {
        await sleep(outcome === "refused" ? agentBackoffMs(failures) : Math.min(WS_RECONNECT_MAX_MS, agentBackoffMs(failures)));
        continue;
      }
      this.log("warn", "WebSocket transport unavailable; using long-poll", { retryWebSocketInMs: WS_RETRY_AFTER_MS });
      await this.pollLoop(Date.now() + WS_RETRY_AFTER_MS);
      failures = refusals = 0;
    }
  }

  /**
   * Why a WebSocket did not open: refused (an HTTP answer without the upgrade, or no way through while
   * plain HTTPS gets an answer) or unreachable (the control plane is down, or the network is).
   */
  private async whyNotOpened(e: unknown): Promise<"refused" | "unreachable"> {
    if (e instanceof UpgradeRefused) {
      // A 5xx (a proxy whose upstream is down), 408 or 429 is trouble on the server's side, not a block.
      return e.status >= 500 || e.status === 408 || e.status === 429 ? "unreachable" : "refused";
    }
    const httpAnswers = await this.client.info().then(
      () => true,
      (err) => err instanceof ApiError && err.status < 500,
    );
    return httpAnswers ? "refused" : "unreachable";
  }

  /** Runs one WebSocket session; resolves when it ends, saying whether it ever opened, and if not, why. */
  private runSocket(): Promise<"opened" | "refused" | "unreachable"> {
    return new Promise((resolve) => {
      SocketLink.open(
        this.opts.server,
        this.credential,
        {
          jobs: (jobs) => {
            for (const job of jobs) void this.runJob(job);
          },
          cancel: (jobIds) => this.stopJobs(jobIds),
          deployments: (version) => this.deployments.noteVersion(version),
          problem: (message) => this.log("warn", "the control plane refused a message", { message }),
        },
        (code, reason) => {
          this.link = null;
          if (!this.stopping) this.log("warn", "push transport closed; reconnecting", { code, reason });
          resolve("opened");
        },
      ).then(
        (link) => {
          if (this.stopping) {
            link.close(); // opened after stop() began: its close event ends this session
            return;
          }
          this.link = link;
          this.log("info", "push transport connected");
          link.send({ t: "credit", free: this.capacity() });
          void this.outbox.flush();
          void this.updateLeases(); // what was held across the reconnect is renewed (and acked) at once
        },
        (e) => {
          if (this.stopping) return resolve("unreachable");
          void this.whyNotOpened(e).then((why) => {
            this.log("warn", "WebSocket connection failed", { error: String(e), ...(why === "unreachable" ? { controlPlane: "unreachable" } : { upgrade: "refused" }) });
            resolve(why);
          });
        },
      );
    });
  }

  private async pollLoop(until: number) {
    let failures = 0;
    while (!this.stopping && Date.now() < until) {
      const free = this.capacity();
      if (free <= 0) {
        await new Promise<void>((r) => this.slotWaiters.push(r));
        continue;
      }
      try {
        const wait = Math.max(0, Math.min(this.opts.pollWaitSeconds, Math.ceil((until - Date.now()) / 1000)));
        const delivery = await this.client.poll(wait, free, this.pollAbort.signal);
        failures = 0;
        this.deployments.noteVersion(delivery.deployments);
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
        const delay = agentBackoffMs(failures);
        this.log("warn", "poll failed; retrying", { error: String(e), retryInMs: Math.round(delay) });
        await sleep(delay);
      }
    }
  }

  /**
   * Output of a running job, as it comes; lost lines are not worth a retry (the result carries the output too).
   * Over HTTP the batches go one after another, and results wait for them, so no line lands after its job ended.
   */
  private sendLogs(batch: LogBatch) {
    if (batch.lines.length > 1 && JSON.stringify(batch).length > MAX_LOG_BATCH_BYTES) {
      // Long lines add up: split so that no request (or message) goes over the body limit.
      const half = Math.ceil(batch.lines.length / 2);
      this.sendLogs({ ...batch, lines: batch.lines.slice(0, half) });
      this.sendLogs({ ...batch, lines: batch.lines.slice(half) });
      return;
    }
    if (this.link?.isOpen) {
      this.link.send({ t: "logs", ...batch });
      return;
    }
    this.logsInFlight = this.logsInFlight
      .then(() => this.client.logs(batch))
      .then(
        () => undefined,
        (e) => this.log("warn", "could not send job output", { error: String(e) }),
      );
  }

  private async sendResults(batch: ResultReport[]) {
    if (this.link?.isOpen) {
      await this.link.request<"results">({ t: "results", results: batch, free: this.capacity() });
      return;
    }
    await this.logsInFlight;
    await this.client.report(batch);
  }

  /** The lease this agent holds for a job now (a redelivery replaces the one it first came with). */
  private lease(job: LeasedJob): LeasedJob {
    return this.leases.get(job.jobId) ?? job;
  }

  private async runJob(job: LeasedJob) {
    if (this.leases.has(job.jobId)) return this.takeRedelivery(job);
    if (this.outbox.retoken(job.jobId, job.leaseToken)) {
      // Its run ended here and the result waits in the outbox (the lease ran out meanwhile): the result
      // now quotes the new lease, and the job is not run again.
      this.log("info", "a job whose result is waiting to be sent was delivered again; the result takes the new lease", { jobId: job.jobId, attempt: job.attempt });
      if (this.link?.isOpen) this.link.send({ t: "credit", free: this.capacity() });
      return;
    }
    this.leases.set(job.jobId, job);
    const { result, files } = job.call ? await this.executeCall(job, job.call) : { result: await this.execute(job), files: [] };
    job = this.lease(job);
    this.leases.delete(job.jobId);
    this.canceledBeforeStart.delete(job.jobId);
    this.running.delete(job.jobId);
    this.unacked.delete(job.jobId);
    for (const wake of this.slotWaiters.splice(0)) wake();
    if (!result.ok && result.kind === "canceled") {
      // The control plane already ended it; only the freed capacity is news.
      if (this.link?.isOpen) this.link.send({ t: "credit", free: this.capacity() });
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
    });
  }

  /**
   * The control plane delivered again a job this agent still holds (its lease ran out while an ack or a
   * renewal was lost). Silence would let that lease run out too and the job run twice: take the new
   * lease for the run already under way and answer at once (an ack if it started, a renewal if not).
   */
  private takeRedelivery(job: LeasedJob) {
    const held = this.leases.get(job.jobId)!;
    if (held.leaseToken !== job.leaseToken) this.leases.set(job.jobId, { ...held, leaseToken: job.leaseToken, leaseExpiresAt: job.leaseExpiresAt, attempt: job.attempt });
    if (this.running.has(job.jobId)) this.unacked.set(job.jobId, { jobId: job.jobId, leaseToken: job.leaseToken });
    this.log("info", "a job already in hand was delivered again; answering with an ack", { jobId: job.jobId, attempt: job.attempt, running: this.running.has(job.jobId) });
    this.updateLeasesSoon(0);
    // The object counted the redelivery against this agent's credit; it took no new slot.
    if (this.link?.isOpen) this.link.send({ t: "credit", free: this.capacity() });
  }

  /**
   * A call of a deployed function: in its deployment's sandbox directory (one call
   * at a time per module), input files written there first, declared output files
   * uploaded afterwards (before the result, so a result never names a missing file).
   */
  private async executeCall(job: LeasedJob, call: CallContext): Promise<{ result: ExecResult; files: { name: string; size: number }[] }> {
    let dir: string;
    try {
      dir = await this.deployments.ensure(call);
    } catch (e) {
      return { result: failedResult("module-unavailable", String(e instanceof Error ? e.message : e)), files: [] };
    }
    const key = `${call.deployment}/${call.generation}/${call.module}`;
    return this.deployments.serialize(key, async () => {
      try {
        for (const name of call.inputs) await writeFile(join(dir, name), await this.client.inputFile(job.jobId, name));
      } catch (e) {
        return { result: failedResult("module-unavailable", `could not fetch the input files: ${String(e)}`), files: [] };
      }
      const result = await this.execute(job, dir, call.instance === "deployment" ? key : undefined);
      const files: { name: string; size: number }[] = [];
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
          await this.client.putOutput(job.jobId, this.lease(job).leaseToken, out.name, await readFile(path));
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
        onStart: () => {
          this.running.add(job.jobId);
          this.scheduleAck(job);
        },
        onLog: (lines) => this.sendLogs({ jobId: job.jobId, leaseToken: this.lease(job).leaseToken, lines }),
      },
    );
  }

  private scheduleAck(job: LeasedJob) {
    this.unacked.set(job.jobId, { jobId: job.jobId, leaseToken: this.lease(job).leaseToken });
    this.updateLeasesSoon(ACK_DELAY_MS);
  }

  private updateLeasesSoon(delayMs: number) {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      void this.updateLeases();
    }, delayMs);
  }

  /**
   * Tells the control plane which leases this agent holds (as BullMQ's lock manager extends its jobs'
   * locks): starts not yet acknowledged are sent as acks until an answer comes, and every other lease
   * held, running or waiting for a thread, is renewed. A lost message costs a retry, never a lease.
   */
  private async updateLeases() {
    if (this.stopping) return;
    if (this.leaseUpdateInFlight) {
      this.leaseUpdateAgain = true; // a start acked during another update goes right after it, not at the next renewal
      return;
    }
    const started = [...this.unacked.values()];
    const held = [...this.leases.values()].filter((l) => !this.unacked.has(l.jobId)).map((l) => ({ jobId: l.jobId, leaseToken: l.leaseToken }));
    if (started.length === 0 && held.length === 0) return;
    this.leaseUpdateInFlight = true;
    try {
      for (let i = 0; i < Math.max(started.length, held.length); i += LIMITS.maxPollBatch) {
        const part = { started: started.slice(i, i + LIMITS.maxPollBatch), held: held.slice(i, i + LIMITS.maxPollBatch) };
        if (this.link?.isOpen) await this.link.request<"started">({ t: "started", ...part }, ACK_ANSWER_MS);
        else await this.client.ack(part.started, part.held, ACK_ANSWER_MS * 2);
      }
      for (const ref of started) if (this.unacked.get(ref.jobId)?.leaseToken === ref.leaseToken) this.unacked.delete(ref.jobId);
    } catch (e) {
      this.log("warn", "lease update not answered; retrying", { error: String(e), unacknowledgedStarts: this.unacked.size, held: held.length });
      if (this.unacked.size > 0) this.updateLeasesSoon(ACK_RETRY_MS);
    } finally {
      this.leaseUpdateInFlight = false;
      if (this.leaseUpdateAgain) {
        this.leaseUpdateAgain = false;
        this.updateLeasesSoon(0);
      }
    }
  }
}

/** Output files larger than this are refused (the control plane would refuse them too). */
const MAX_OUTPUT_FILE_BYTES = 16 * 1024 * 1024;

/** A job that ended before it ran (`rejected`: it cannot run on this device at all). */
const failedResult = (kind: FailureKind, message: string, rejected = false): ExecResult => ({
  ok: false, kind, message, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 0, logs: [], ...(rejected ? { rejected } : {}),
});

function toReport(job: LeasedJob, r: ExecResult, files: { name: string; size: number }[] = []): ResultReport {
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
  };
}
