/**
 * The base of the per-device object: its registration, presence and health,
 * and the queue, leases, results and waiters of its jobs, all in its own
 * SQLite database (enqueue and every state change is one transaction), and
 * the agent's transports. Decisions (transitions, lease expiry, backoff,
 * presence, alarm time) are pure functions in src/core; this class stores,
 * answers RPC and runs the alarm. DeviceObject (device-object.ts) adds the
 * device's deployments, calls and chains through the hooks at the end.
 */
import { SqlObject } from "./sql-object.js";
import { fail, ok, type Outcome } from "./rpc.js";
import { CALL_COLUMNS, IDEMPOTENCY_TABLE, INDEX_FEED_TABLES, JOB_LOGS_TABLE, jobView, JOBS_TABLE, type CallRecord, type JobRow } from "./job-row.js";
import { DEPLOYMENT_TABLES } from "./device-deployments.js";
import { jobIndexStub } from "./job-index-object.js";
import { JobOutput } from "./job-output.js";
import { IndexFeed } from "./index-feed.js";
import { registryStub } from "./registry-object.js";
import { transition, type JobEvent } from "../core/lifecycle.js";
import { isOnline, leaseExpiry, nextAlarm, retryDelayMs } from "../core/timing.js";
import { sha256Hex, timingSafeEqual } from "../core/crypto.js";
import { settingsFrom, type Env, type Settings } from "../worker/env.js";
import { randomBase32 } from "../protocol/ids.js";
import { isTerminal, jobLinks, type JobError, type JobLogs, type JobRef, type JobState, type JobSubmission, type JobView } from "../protocol/job.js";
import type { DeviceDescription, DeviceStatus, DeviceView, Health } from "../protocol/device.js";
import { AgentMessage, WS_PING, WS_PONG, type AgentLogLine, type Delivery, type Heartbeat, type LeasedJob, type LeaseRef, type LogBatch, type ResultReport, type ServerMessage } from "../protocol/agent.js";
import { missingInterfaces, type Arg } from "../protocol/wasm.js";
import { iso } from "../core/time.js";

const DEVICE_TABLE = `
CREATE TABLE device (
  id              TEXT PRIMARY KEY,
  name            TEXT,
  description     TEXT NOT NULL,
  credential_hash TEXT NOT NULL,
  registered_at   INTEGER NOT NULL,
  last_seen       INTEGER,
  health          TEXT,
  health_at       INTEGER,
  status          TEXT NOT NULL DEFAULT 'offline'
);`;

export type DeviceRow = {
  id: string;
  name: string | null;
  description: string;
  credential_hash: string;
  registered_at: number;
  last_seen: number | null;
  health: string | null;
  health_at: number | null;
  status: DeviceStatus;
  drained: number;
  namespace: string;
};

export interface Poller {
  max: number;
  deliver(jobs: LeasedJob[]): void;
}

export type Disposition = "accepted" | "duplicate" | "stale";


/** The Worker forwards the agent's WebSocket upgrade with the credential's secret in this header. */
export const DEVICE_SECRET_HEADER = "x-wasmvisor-device-secret";
const AGENT_TAG = "agent";
const AGENT_LOG_ROWS = 1000;
type SocketState = { credit: number };

/** What life-cycle decisions need of a job row. */
type JobCore = Pick<JobRow, "id" | "state" | "lease_token" | "attempts" | "max_attempts">;
const CORE_COLUMNS = "id, state, lease_token, attempts, max_attempts";

const counts = (row: JobCore) => ({ attempts: row.attempts, maxAttempts: row.max_attempts });

export abstract class DeviceQueue extends SqlObject<Env> {
  protected device: DeviceRow | undefined;
  protected readonly settings: Settings = settingsFrom(this.env);
  protected pollers: Poller[] = [];
  private readonly resultWaiters = new Map<string, Set<(view: JobView) => void>>();
  private readonly output = new JobOutput(this.sql, this.clock);
  private alarmAt: number | null = null;
  /** the last `change_seq` stamped on a job change (see INDEX_FEED_TABLES) */
  private lastChange = 0;
  /** Every state change of a job takes the next sequence number in the same statement: the index feed follows it. */
  private nextChange(): number {
    return ++this.lastChange;
  }

  private readonly index = new IndexFeed(this.sql, () => {
    const d = this.device;
    return d ? (rows) => jobIndexStub(this.env).apply(d.id, d.namespace, rows) : undefined;
  });
  /** the last secret whose hash matched: spares a digest on every agent request */
  private verifiedSecret: string | null = null;

  protected migrations() {
    return [
      DEVICE_TABLE + JOBS_TABLE,
      IDEMPOTENCY_TABLE,
      "ALTER TABLE device ADD COLUMN drained INTEGER NOT NULL DEFAULT 0",
      JOB_LOGS_TABLE,
      INDEX_FEED_TABLES,
      "ALTER TABLE device ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default'",
      "CREATE TABLE agent_logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, level TEXT NOT NULL, msg TEXT NOT NULL, fields TEXT)",
      DEPLOYMENT_TABLES + CALL_COLUMNS,
    ];
  }

  protected override async load() {
    // Keepalives are answered by the runtime itself, so an idle device's object can hibernate.
    this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(WS_PING, WS_PONG));
    this.device = this.one<DeviceRow>("SELECT * FROM device LIMIT 1");
    this.lastChange = this.one<{ n: number }>(
      "SELECT MAX((SELECT COALESCE(MAX(change_seq), 0) FROM jobs), (SELECT COALESCE(MAX(change_seq), 0) FROM index_tombstones)) AS n",
    )!.n;
    this.alarmAt = await this.ctx.storage.getAlarm();
    this.index.resume(); // rows left over from before a restart
  }

  // ---- registration and presence -------------------------------------------------

  async register(deviceId: string, name: string | null, description: DeviceDescription, credentialHash: string, namespace: string): Promise<Outcome<DeviceView>> {
    if (this.device) return fail("conflict", `device ${deviceId} is already registered`);
    const now = this.clock.now();
    this.run(
      "INSERT INTO device (id, name, description, credential_hash, registered_at, namespace) VALUES (?, ?, ?, ?, ?, ?)",
      deviceId, name, JSON.stringify(description), credentialHash, now, namespace,
    );
    this.device = this.one<DeviceRow>("SELECT * FROM device LIMIT 1");
    await this.publish();
    return ok(this.deviceView());
  }

  /** The tenant this device belongs to (null: not registered). */
  async namespace(): Promise<string | null> {
    return this.device?.namespace ?? null;
  }

  async view(): Promise<Outcome<DeviceView>> {
    return this.device ? ok(this.deviceView()) : fail("not-found", "no such device");
  }

  async authenticate(secret: string): Promise<boolean> {
    if (!this.device) return false;
    if (this.verifiedSecret !== null && timingSafeEqual(secret, this.verifiedSecret)) return true;
    if (!timingSafeEqual(await sha256Hex(secret), this.device.credential_hash)) return false;
    this.verifiedSecret = secret;
    return true;
  }

  async heartbeat(secret: string, hb: Heartbeat): Promise<Outcome<{ serverTime: number; cancel: string[]; deployments: number | undefined }>> {
    if (!(await this.authenticate(secret))) return fail("unauthenticated", "bad device credential");
    return ok(await this.recordHeartbeat(hb));
  }

  private async recordHeartbeat(hb: Heartbeat): Promise<{ serverTime: number; cancel: string[]; deployments: number | undefined }> {
    const now = this.clock.now();
    this.run("UPDATE device SET health = ?, health_at = ? WHERE id = ?", JSON.stringify(hb.health), now, this.device!.id);
    this.device!.health = JSON.stringify(hb.health);
    this.device!.health_at = now;
    this.keepAgentLogs(hb.logs);
    this.markSeen(now);
    await this.publish();
    return { serverTime: now, cancel: this.leasesNoLongerHeld(hb.runningJobs), deployments: this.desiredVersion() };
  }

  /** The agent's own recent log lines (runner.logs): the newest AGENT_LOG_ROWS are kept. */
  private keepAgentLogs(lines: AgentLogLine[]) {
    if (lines.length === 0) return;
    for (const l of lines) this.run("INSERT INTO agent_logs (at, level, msg, fields) VALUES (?, ?, ?, ?)", l.at, l.level, l.msg, l.fields ?? null);
    this.run("DELETE FROM agent_logs WHERE seq <= (SELECT MAX(seq) FROM agent_logs) - ?", AGENT_LOG_ROWS);
  }

  async agentLogs(limit: number): Promise<Outcome<{ lines: (AgentLogLine & { seq: number })[] }>> {
    if (!this.device) return fail("not-found", "no such device");
    const rows = this.all<{ seq: number; at: number; level: AgentLogLine["level"]; msg: string; fields: string | null }>(
      "SELECT * FROM (SELECT * FROM agent_logs ORDER BY seq DESC LIMIT ?) ORDER BY seq", limit,
    );
    return ok({ lines: rows.map((r) => ({ seq: r.seq, at: r.at, level: r.level, msg: r.msg, ...(r.fields ? { fields: r.fields } : {}) })) });
  }

  /**
   * Jobs the agent runs that have ended here (canceled, failed, gone): it should stop them. A job whose
   * lease merely expired is not among them: it comes back to this same device, whose agent then takes
   * the new lease for the run it already has (stopping it would run a healthy job twice).
   */
  private leasesNoLongerHeld(running: LeaseRef[]): string[] {
    return running
      .filter((ref) => {
        const row = this.one<{ state: JobState }>("SELECT state FROM jobs WHERE id = ?", ref.jobId);
        return !row || isTerminal(row.state);
      })
      .map((ref) => ref.jobId);
  }

  private markSeen(now: number) {
    const d = this.device!;
    const wasOnline = d.status === "online";
    d.last_seen = now;
    d.status = "online";
    this.run("UPDATE device SET last_seen = ?, status = 'online' WHERE id = ?", now, d.id);
    if (!wasOnline) this.ctx.waitUntil(this.publish());
    this.ensureAlarmBy(now + this.settings.heartbeatTimeoutMs);
  }

  /** Keeps the registry's listing row (GET /v1/devices) current. */
  private async publish() {
    const d = this.device!;
    await registryStub(this.env).upsertDevice({
      id: d.id,
      namespace: d.namespace,
      name: d.name,
      status: d.status,
      description: d.description,
      health: d.health,
      healthAt: d.health_at,
      lastSeen: d.last_seen,
      registeredAt: d.registered_at,
    });
  }

  /** A drained device gets no new work; what it runs finishes. `resume` undoes it. */
  async setDrained(drained: boolean): Promise<Outcome<DeviceView>> {
    if (!this.device) return fail("not-found", "no such device");
    this.device.drained = drained ? 1 : 0;
    this.run("UPDATE device SET drained = ? WHERE id = ?", this.device.drained, this.device.id);
    if (!drained) this.dispatch();
    return ok(this.deviceView());
  }

  private deviceView(): DeviceView {
    const d = this.device!;
    const counts = this.all<{ state: JobState; n: number }>(
      "SELECT state, COUNT(*) AS n FROM jobs WHERE state IN ('QUEUED', 'LEASED', 'RUNNING') GROUP BY state",
    );
    const count = (s: JobState) => counts.find((c) => c.state === s)?.n ?? 0;
    return {
      id: d.id,
      namespace: d.namespace,
      name: d.name,
      status: d.status,
      description: JSON.parse(d.description) as DeviceDescription,
      health: d.health ? { ...(JSON.parse(d.health) as Health), at: iso(d.health_at)! } : null,
      registeredAt: iso(d.registered_at)!,
      lastSeenAt: iso(d.last_seen),
      queue: { queued: count("QUEUED"), running: count("LEASED") + count("RUNNING") },
      drained: d.drained === 1,
    };
  }

  // ---- jobs: submission and reads ------------------------------------------------

  /**
   * Queues the job (or only creates it, with `start: false`); with `waitMs`, also waits
   * for it to end (create-and-wait in one round trip). With an idempotency key, a repeat
   * of the same request answers the job it created; the same key with another body is a conflict.
   */
  async submit(
    jobId: string,
    spec: JobSubmission,
    waitMs = 0,
    idempotency: { key: string; bodyHash: string } | null = null,
    requires: string[] = [],
  ): Promise<Outcome<{ done: boolean; job: JobView; replayed: boolean }>> {
    if (!this.device) return fail("not-found", `device ${spec.device} is not registered`);
    const now = this.clock.now();
    if (idempotency) {
      const seen = this.one<{ body_hash: string; job_id: string }>("SELECT body_hash, job_id FROM idempotency WHERE key = ?", idempotency.key);
      if (seen && seen.body_hash !== idempotency.bodyHash) return fail("conflict", "this Idempotency-Key was used with a different request body");
      if (seen) {
        const replay = await this.awaitResult(seen.job_id, waitMs);
        return replay.ok ? ok({ ...replay.value, replayed: true }) : replay;
      }
    }
    const deadline = spec.deadline ? Date.parse(spec.deadline) : null;
    if (deadline !== null && deadline <= now) return fail("unprocessable", "the deadline has already passed");
    const missing = missingInterfaces(requires, this.interfaces());
    if (missing.length > 0) {
      this.insertRejected(jobId, spec, deadline, now, missing);
    } else if (!spec.start || !this.pushAtOnce(jobId, spec, deadline, now)) {
      this.insertJob(jobId, spec, deadline, now);
      if (spec.start) this.dispatch();
    }
    if (idempotency) {
      this.run("INSERT INTO idempotency (key, body_hash, job_id, created_at) VALUES (?, ?, ?, ?)", idempotency.key, idempotency.bodyHash, jobId, now);
    }
    if (deadline !== null) this.ensureAlarmBy(deadline);
    // A job just queued has not ended: wait for it without reading it back first.
    const out = waitMs > 0 && missing.length === 0 ? await this.waitFor(jobId, waitMs) : await this.awaitResult(jobId, waitMs);
    return out.ok ? ok({ ...out.value, replayed: false }) : out;
  }

  /** Many jobs in one transaction, delivered together. */
  async submitBatch(entries: { jobId: string; spec: JobSubmission; requires: string[] }[]): Promise<Outcome<JobRef[]>> {
    if (!this.device) return fail("not-found", "the device is not registered");
    const now = this.clock.now();
    for (const { spec } of entries) {
      if (spec.deadline && Date.parse(spec.deadline) <= now) return fail("unprocessable", "a deadline has already passed");
    }
    let earliestDeadline: number | null = null;
    const rejected = new Set<string>();
    this.ctx.storage.transactionSync(() => {
      for (const { jobId, spec, requires } of entries) {
        const deadline = spec.deadline ? Date.parse(spec.deadline) : null;
        const missing = missingInterfaces(requires, this.interfaces());
        if (missing.length > 0) {
          this.insertRejected(jobId, spec, deadline, now, missing);
          rejected.add(jobId);
          continue;
        }
        this.insertJob(jobId, spec, deadline, now);
        earliestDeadline = nextAlarm([earliestDeadline, deadline]);
      }
    });
    if (earliestDeadline !== null) this.ensureAlarmBy(earliestDeadline);
    const leased = new Set(this.dispatch());
    return ok(
      entries.map(({ jobId, spec }) => ({
        id: jobId,
        device: this.device!.id,
        state: rejected.has(jobId) ? "REJECTED" : leased.has(jobId) ? "LEASED" : spec.start ? "QUEUED" : "CREATED",
        links: jobLinks(jobId),
      })),
    );
  }

  /** The host functions this device links (from its description), read once. */
  private interfaces(): ReadonlySet<string> {
    this.linked ??= new Set((JSON.parse(this.device!.description) as DeviceDescription).supervisorInterfaces);
    return this.linked;
  }
  private linked: ReadonlySet<string> | undefined;

  /** A job the device cannot run is recorded as REJECTED at once, with what is missing. */
  private insertRejected(jobId: string, spec: JobSubmission, deadline: number | null, now: number, missing: string[]) {
    this.insertJob(jobId, { ...spec, start: false }, deadline, now);
    const error: JobError = { kind: "link-error", message: `device ${this.device!.id} does not provide: ${missing.join(", ")}` };
    this.run("UPDATE jobs SET state = 'REJECTED', error = ?, finished_at = ?, updated_at = ?, change_seq = ? WHERE id = ?", JSON.stringify(error), now, now, this.nextChange(), jobId);
  }

  protected insertJob(jobId: string, spec: JobSubmission, deadline: number | null, now: number, call: CallRecord | null = null) {
    this.run(
      `INSERT INTO jobs (id, state, priority, module, function, args, timeout_ms, max_attempts, deadline, created_at, updated_at, change_seq, call, deployment)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      jobId, spec.start ? "QUEUED" : "CREATED", spec.priority, spec.module, spec.function, JSON.stringify(spec.args),
      spec.timeoutMs, spec.maxAttempts, deadline, now, now, this.nextChange(), call ? JSON.stringify(call) : null, call?.ctx.deployment ?? null,
    );
    this.index.schedule();
  }

  /** Queues a job that was created without being queued. */
  async start(jobId: string): Promise<Outcome<JobView>> {
    const row = this.jobRow(jobId);
    if (!row) return fail("not-found", `no job ${jobId}`);
    const t = transition(row.state, { type: "start" }, counts(row));
    if (!t.ok) return fail("conflict", t.reason);
    this.run("UPDATE jobs SET state = 'QUEUED', updated_at = ?, change_seq = ? WHERE id = ?", this.clock.now(), this.nextChange(), jobId);
    this.index.schedule();
    this.dispatch();
    return ok(this.jobViewById(jobId)!);
  }

  /** Deletes an ended job with its result and logs. */
  async remove(jobId: string): Promise<Outcome<{ id: string }>> {
    const row = this.jobRow(jobId);
    if (!row) return fail("not-found", `no job ${jobId}`);
    if (!isTerminal(row.state)) return fail("conflict", `job ${jobId} is ${row.state}; cancel it first`);
    this.ctx.storage.transactionSync(() => {
      this.run("DELETE FROM jobs WHERE id = ?", jobId);
      this.run("INSERT INTO index_tombstones (change_seq, job_id) VALUES (?, ?)", this.nextChange(), jobId);
      this.run("DELETE FROM idempotency WHERE job_id = ?", jobId);
      this.output.remove(jobId);
    });
    this.index.schedule();
    return ok({ id: jobId });
  }

  async exists(): Promise<boolean> {
    return this.device !== undefined;
  }

  /**
   * The fast path: when the agent is connected with credit and nothing is queued
   * ahead, push the job first and record it as leased in the same turn. The
   * output gate holds messages sent after a write until it commits; sending
   * first saves that wait on the push, while the caller's answer still waits
   * for the commit, so nothing is acknowledged before it is durable.
   */
  protected pushAtOnce(jobId: string, spec: JobSubmission, deadline: number | null, now: number, call: CallRecord | null = null): boolean {
    const socket = this.agentSocket();
    if (!socket || this.device?.drained) return false;
    const credit = this.credit(socket);
    if (credit <= 0 || this.one("SELECT 1 AS x FROM jobs WHERE state = 'QUEUED' AND not_before <= ? LIMIT 1", now)) return false;
    const leaseToken = randomBase32(16);
    const expires = leaseExpiry(now, "delivered", spec.timeoutMs, this.settings);
    this.send(socket, {
      t: "jobs",
      jobs: [{ jobId, leaseToken, leaseExpiresAt: expires, attempt: 1, module: spec.module, function: spec.function, args: spec.args, timeoutMs: spec.timeoutMs, ...(call ? { call: call.ctx } : {}) }],
    });
    this.setCredit(socket, credit - 1);
    this.run(
      `INSERT INTO jobs (id, state, priority, module, function, args, timeout_ms, attempts, max_attempts, deadline, lease_token, lease_expires, created_at, updated_at, change_seq, call, deployment)
       VALUES (?, 'LEASED', ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      jobId, spec.priority, spec.module, spec.function, JSON.stringify(spec.args), spec.timeoutMs, spec.maxAttempts, deadline, leaseToken, expires, now, now, this.nextChange(),
      call ? JSON.stringify(call) : null, call?.ctx.deployment ?? null,
    );
    this.index.schedule();
    this.ensureAlarmBy(expires);
    return true;
  }

  async getJob(jobId: string): Promise<Outcome<JobView>> {
    const view = this.jobViewById(jobId);
    return view ? ok(view) : fail("not-found", `no job ${jobId}`);
  }

  /** The job once it is terminal, or as it stands when `waitMs` runs out. */
  async awaitResult(jobId: string, waitMs: number): Promise<Outcome<{ done: boolean; job: JobView }>> {
    const view = this.jobViewById(jobId);
    if (!view) return fail("not-found", `no job ${jobId}`);
    if (isTerminal(view.state) || waitMs <= 0) return ok({ done: isTerminal(view.state), job: view });
    return this.waitFor(jobId, waitMs);
  }

  /** Waits for a job known to exist and not to have ended (no need to read it first). */
  private waitFor(jobId: string, waitMs: number): Promise<Outcome<{ done: boolean; job: JobView }>> {
    return new Promise((resolve) => {
      const waiters = this.resultWaiters.get(jobId) ?? new Set();
      this.resultWaiters.set(jobId, waiters);
      const finish = (job: JobView, done: boolean) => {
        clearTimeout(timer);
        waiters.delete(onDone);
        if (waiters.size === 0) this.resultWaiters.delete(jobId);
        resolve(ok({ done, job }));
      };
      const onDone = (job: JobView) => finish(job, true);
      const timer = setTimeout(() => finish(this.jobViewById(jobId)!, false), waitMs);
      waiters.add(onDone);
    });
  }

  async cancel(jobId: string): Promise<Outcome<JobView>> {
    const row = this.jobRow(jobId);
    if (!row) return fail("not-found", `no job ${jobId}`);
    const t = transition(row.state, { type: "cancel" }, counts(row));
    if (!t.ok) return fail("conflict", t.reason);
    this.finish(row, "CANCELED", null, { kind: "canceled", message: "canceled by request" }, this.clock.now());
    const socket = this.agentSocket();
    if (socket && (row.state === "LEASED" || row.state === "RUNNING")) this.send(socket, { t: "cancel", jobIds: [jobId] });
    return ok(this.jobViewById(jobId)!);
  }

  protected jobRow(jobId: string) {
    return this.one<JobRow>("SELECT * FROM jobs WHERE id = ?", jobId);
  }

  protected jobViewById(jobId: string) {
    const row = this.jobRow(jobId);
    return row ? jobView(row, this.device!.id) : undefined;
  }

  // ---- jobs: delivery to the agent -------------------------------------------------

  async poll(secret: string, waitMs: number, max: number): Promise<Outcome<Delivery>> {
    if (!(await this.authenticate(secret))) return fail("unauthenticated", "bad device credential");
    this.markSeen(this.clock.now());
    // One agent per device keeps one poll open: a new poll means any older one is dead.
    for (const p of this.pollers.splice(0)) p.deliver([]);
    const jobs = this.device!.drained ? [] : this.leaseReady(max);
    if (jobs.length > 0 || waitMs <= 0) return ok({ jobs, serverTime: this.clock.now(), deployments: this.desiredVersion() });
    return new Promise((resolve) => {
      const poller: Poller = {
        max,
        deliver: (delivered) => {
          clearTimeout(timer);
          this.pollers = this.pollers.filter((p) => p !== poller);
          resolve(ok({ jobs: delivered, serverTime: this.clock.now(), deployments: this.desiredVersion() }));
        },
      };
      const timer = setTimeout(() => poller.deliver([]), waitMs);
      this.pollers.push(poller);
    });
  }

  /** Hands ready jobs to the agent: pushed over its WebSocket up to its credit, else to a waiting poll. Answers the ids leased. */
  protected dispatch(): string[] {
    if (this.device?.drained) return [];
    const socket = this.agentSocket();
    if (socket) {
      const credit = this.credit(socket);
      if (credit <= 0) return [];
      const jobs = this.leaseReady(credit);
      if (jobs.length === 0) return [];
      this.setCredit(socket, credit - jobs.length);
      this.send(socket, { t: "jobs", jobs });
      return jobs.map((j) => j.jobId);
    }
    const poller = this.pollers[0];
    if (!poller) return [];
    const jobs = this.leaseReady(poller.max);
    if (jobs.length > 0) poller.deliver(jobs);
    return jobs.map((j) => j.jobId);
  }

  private leaseReady(max: number): LeasedJob[] {
    const now = this.clock.now();
    const leased: LeasedJob[] = [];
    this.ctx.storage.transactionSync(() => {
      const rows = this.all<JobRow>(
        "SELECT * FROM jobs WHERE state = 'QUEUED' AND not_before <= ? ORDER BY priority DESC, seq LIMIT ?",
        now, max,
      );
      for (const row of rows) {
        if (row.deadline !== null && row.deadline <= now) {
          this.apply(row, { type: "deadline_passed" }, now, null, { kind: "deadline", message: "the deadline passed before the job started" });
          continue;
        }
        const leaseToken = randomBase32(16);
        const expires = leaseExpiry(now, "delivered", row.timeout_ms, this.settings);
        this.run(
          "UPDATE jobs SET state = 'LEASED', attempts = attempts + 1, lease_token = ?, lease_expires = ?, updated_at = ?, change_seq = ? WHERE id = ?",
          leaseToken, expires, now, this.nextChange(), row.id,
        );
        leased.push({
          jobId: row.id,
          leaseToken,
          leaseExpiresAt: expires,
          attempt: row.attempts + 1,
          module: row.module,
          function: row.function,
          args: JSON.parse(row.args) as Arg[],
          timeoutMs: row.timeout_ms,
          ...(row.call ? { call: (JSON.parse(row.call) as CallRecord).ctx } : {}),
        });
      }
    });
    if (leased.length > 0) {
      this.ensureAlarmBy(leased[0]!.leaseExpiresAt);
      this.index.schedule();
    }
    return leased;
  }

  async ack(secret: string, started: LeaseRef[], held: LeaseRef[] = []): Promise<Outcome<{ started: number; held: number }>> {
    if (!(await this.authenticate(secret))) return fail("unauthenticated", "bad device credential");
    return ok({ started: this.applyAcks(started), held: this.renewHeld(held) });
  }

  /**
   * Jobs an agent holds keep their lease while it says so (as BullMQ's lock manager extends each active
   * job's lock): at least the ack window from now, never shortened, whether started or not.
   */
  private renewHeld(refs: LeaseRef[]): number {
    const now = this.clock.now();
    let renewed = 0;
    for (const ref of refs) {
      // rowsWritten counts index entries too: one job per ref at most.
      renewed += Math.min(1, this.run(
        "UPDATE jobs SET lease_expires = MAX(lease_expires, ?) WHERE id = ? AND lease_token = ? AND state IN ('LEASED', 'RUNNING')",
        leaseExpiry(now, "delivered", 0, this.settings), ref.jobId, ref.leaseToken,
      ));
    }
    return renewed;
  }

  /** Started jobs get the long lease (timeout + grace); answers how many were extended. */
  private applyAcks(refs: LeaseRef[]): number {
    const now = this.clock.now();
    let started = 0;
    let earliest: number | null = null;
    this.ctx.storage.transactionSync(() => {
      for (const ref of refs) {
        const row = this.jobRow(ref.jobId);
        if (!row || row.lease_token !== ref.leaseToken || !transition(row.state, { type: "ack" }, counts(row)).ok) continue;
        const expires = leaseExpiry(now, "started", row.timeout_ms, this.settings);
        this.run("UPDATE jobs SET state = 'RUNNING', started_at = ?, lease_expires = ?, updated_at = ?, change_seq = ? WHERE id = ?", now, expires, now, this.nextChange(), row.id);
        earliest = nextAlarm([earliest, expires]);
        started++;
      }
    });
    if (earliest !== null) this.ensureAlarmBy(earliest);
    if (started > 0) this.index.schedule();
    return started;
  }

  async report(secret: string, reports: ResultReport[]): Promise<Outcome<{ jobId: string; disposition: Disposition }[]>> {
    if (!(await this.authenticate(secret))) return fail("unauthenticated", "bad device credential");
    const out = this.applyReports(reports);
    this.dispatch();
    return ok(out);
  }

  /** Results quoting the current lease are applied; repeats are duplicates, others stale: neither changes anything. */
  private applyReports(reports: ResultReport[]): { jobId: string; disposition: Disposition }[] {
    const now = this.clock.now();
    const out: { jobId: string; disposition: Disposition }[] = [];
    this.ctx.storage.transactionSync(() => {
      for (const r of reports) {
        const row = this.one<JobCore>(`SELECT ${CORE_COLUMNS} FROM jobs WHERE id = ?`, r.jobId);
        if (!row || row.lease_token !== r.leaseToken) {
          out.push({ jobId: r.jobId, disposition: "stale" });
        } else if (row.state !== "LEASED" && row.state !== "RUNNING") {
          out.push({ jobId: r.jobId, disposition: "duplicate" });
        } else {
          const event: JobEvent =
            r.outcome === "succeeded" ? { type: "succeed" }
            : r.outcome === "timed_out" ? { type: "time_out" }
            : r.outcome === "rejected" ? { type: "reject" }
            : { type: "fail", kind: r.error?.kind ?? "internal" };
          if (r.logs.length) this.output.append(r.jobId, r.logs);
          this.apply(row, event, now, r.result, r.error);
          out.push({ jobId: r.jobId, disposition: "accepted" });
        }
      }
    });
    return out;
  }

  // ---- job output: lines with timestamps, followed live over SSE ---------------------

  async postLogs(secret: string, batch: LogBatch): Promise<Outcome<{ accepted: number }>> {
    if (!(await this.authenticate(secret))) return fail("unauthenticated", "bad device credential");
    return ok({ accepted: this.acceptLogs(batch) });
  }

  /** Lines of a running job, from the agent holding its lease; anything else is ignored. */
  private acceptLogs(batch: LogBatch): number {
    const row = this.one<{ state: JobState; lease_token: string | null }>("SELECT state, lease_token FROM jobs WHERE id = ?", batch.jobId);
    if (!row || row.lease_token !== batch.leaseToken || (row.state !== "LEASED" && row.state !== "RUNNING")) return 0;
    return this.output.append(batch.jobId, batch.lines);
  }

  async logs(jobId: string): Promise<Outcome<JobLogs>> {
    const job = this.one<{ state: JobState }>("SELECT state FROM jobs WHERE id = ?", jobId);
    return job ? ok(this.output.read(jobId, isTerminal(job.state))) : fail("not-found", `no job ${jobId}`);
  }

  /** Server-sent events: the lines so far, then new ones as they arrive, then `end` when the job ends. */
  async followLogs(jobId: string): Promise<Outcome<ReadableStream<Uint8Array>>> {
    const job = this.one<{ state: JobState }>("SELECT state FROM jobs WHERE id = ?", jobId);
    return job ? ok(this.output.follow(jobId, isTerminal(job.state) ? job.state : null)) : fail("not-found", `no job ${jobId}`);
  }

  // ---- the push transport: one WebSocket to the agent (hibernation API) ---------------

  override async fetch(request: Request): Promise<Response> {
    const secret = request.headers.get(DEVICE_SECRET_HEADER);
    if (!secret || !(await this.authenticate(secret))) return new Response("bad device credential", { status: 401 });
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return new Response("expected a WebSocket upgrade", { status: 426 });
    // One agent per device: a new connection replaces any older (possibly dead) one.
    for (const old of this.ctx.getWebSockets(AGENT_TAG)) old.close(4000, "replaced by a newer connection");
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [AGENT_TAG]);
    server.serializeAttachment({ credit: 0 } satisfies SocketState);
    this.markSeen(this.clock.now());
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, raw: string | ArrayBuffer) {
    let msg: AgentMessage;
    try {
      msg = AgentMessage.parse(JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw)));
    } catch (e) {
      this.send(ws, { t: "error", message: `message refused: ${e instanceof Error ? e.message : String(e)}`.slice(0, 2000) });
      return;
    }
    switch (msg.t) {
      case "credit":
        this.setCredit(ws, msg.free);
        break;
      case "started": {
        const started = this.applyAcks(msg.started);
        const held = this.renewHeld(msg.held);
        // With an id the agent waits for this answer, and sends again until it comes.
        if (msg.id !== undefined) this.send(ws, { t: "acked", id: msg.id, started, held });
        return;
      }
      case "results":
        this.send(ws, { t: "reported", id: msg.id, dispositions: this.applyReports(msg.results) });
        this.setCredit(ws, msg.free);
        break;
      case "logs":
        this.acceptLogs(msg);
        return;
      case "heartbeat": {
        const { cancel, deployments } = await this.recordHeartbeat({ health: msg.health, runningJobs: msg.runningJobs, logs: msg.logs });
        this.send(ws, { t: "heartbeat-ack", id: msg.id, cancel, deployments });
        return;
      }
    }
    this.dispatch();
  }

  override async webSocketClose(ws: WebSocket, code: number) {
    // Jobs pushed on this socket keep their leases: they expire and come back if nobody reports.
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, "closed");
    } catch {
      // already closed
    }
  }

  protected agentSocket(): WebSocket | undefined {
    return this.ctx.getWebSockets(AGENT_TAG)[0];
  }

  private credit(ws: WebSocket): number {
    return (ws.deserializeAttachment() as SocketState | null)?.credit ?? 0;
  }

  private setCredit(ws: WebSocket, credit: number) {
    ws.serializeAttachment({ credit: Math.max(0, credit) } satisfies SocketState);
  }

  protected send(ws: WebSocket, msg: ServerMessage) {
    try {
      ws.send(JSON.stringify(msg));
    } catch {
      // A dead socket: leases cover whatever it was carrying.
    }
  }

  // ---- state changes -----------------------------------------------------------

  /** Applies one life-cycle event: either back to the queue after a backoff, or to a terminal state. */
  private apply(row: JobCore, event: JobEvent, now: number, result: unknown, error: JobError | null) {
    const t = transition(row.state, event, counts(row));
    if (!t.ok) return;
    this.index.schedule();
    if (t.to === "QUEUED") {
      const notBefore = now + retryDelayMs(row.attempts, Math.random(), this.settings.retryBaseMs);
      this.run(
        "UPDATE jobs SET state = 'QUEUED', lease_token = NULL, lease_expires = NULL, not_before = ?, error = ?, updated_at = ?, change_seq = ? WHERE id = ?",
        notBefore, error ? JSON.stringify(error) : null, now, this.nextChange(), row.id,
      );
      this.ensureAlarmBy(notBefore);
    } else {
      this.finish(row, t.to, result, error, now);
    }
  }

  protected finish(row: JobCore, state: JobState, result: unknown, error: JobError | null, now: number) {
    this.index.schedule();
    // One statement writes the end and answers what follows from it: whether a chain step must hand on,
    // and (only when someone waits) the row itself, so the waiter's answer needs no second read.
    const waiters = this.resultWaiters.get(row.id);
    const after = this.one<JobRow & { chained: number }>(
      `UPDATE jobs SET state = ?, result = ?, error = ?, lease_expires = NULL, finished_at = ?, started_at = COALESCE(started_at, ?), updated_at = ?, change_seq = ?
       WHERE id = ? RETURNING ${waiters ? "*, " : ""}(call IS NOT NULL AND json_extract(call, '$.next') IS NOT NULL) AS chained`,
      state, result == null ? null : JSON.stringify(result), error ? JSON.stringify(error) : null, now, now, now, this.nextChange(), row.id,
    );
    this.output.end(row.id, state);
    this.afterFinish(row.id, state, after?.chained === 1, now);
    if (waiters && after) {
      const view = jobView(after, this.device!.id);
      for (const w of [...waiters]) w(view);
    }
  }

  // ---- the one alarm: leases, retries, deadlines, presence --------------------------

  override async alarm() {
    const now = this.clock.now();
    this.alarmAt = null;
    this.ctx.storage.transactionSync(() => {
      const expired = this.all<JobRow>("SELECT * FROM jobs WHERE state IN ('LEASED', 'RUNNING') AND lease_expires <= ?", now);
      for (const row of expired) {
        this.apply(row, { type: "lease_expired" }, now, null, { kind: "lease-expired", message: `the agent did not report within the lease (attempt ${row.attempts})` });
      }
      const late = this.all<JobRow>("SELECT * FROM jobs WHERE state IN ('CREATED', 'QUEUED') AND deadline <= ?", now);
      for (const row of late) {
        this.apply(row, { type: "deadline_passed" }, now, null, { kind: "deadline", message: "the deadline passed before the job started" });
      }
    });
    const d = this.device;
    if (d && d.status === "online" && !isOnline(d.last_seen, now, this.settings.heartbeatTimeoutMs)) {
      d.status = "offline";
      this.run("UPDATE device SET status = 'offline' WHERE id = ?", d.id);
      await this.publish();
    }
    this.dispatch();
    this.index.resume();
    await this.alarmWork(now);
    await this.rescheduleAlarm(this.clock.now());
  }

  private async rescheduleAlarm(now: number) {
    const min = (q: string, ...p: SqlStorageValue[]) => this.one<{ t: number | null }>(q, ...p)?.t ?? null;
    const d = this.device;
    const at = nextAlarm([
      min("SELECT MIN(lease_expires) AS t FROM jobs WHERE state IN ('LEASED', 'RUNNING')"),
      min("SELECT MIN(deadline) AS t FROM jobs WHERE state IN ('CREATED', 'QUEUED')"),
      min("SELECT MIN(not_before) AS t FROM jobs WHERE state = 'QUEUED' AND not_before > ?", now),
      d && d.status === "online" && d.last_seen !== null ? d.last_seen + this.settings.heartbeatTimeoutMs : null,
      ...this.alarmTimes(),
    ]);
    if (at === null) {
      await this.ctx.storage.deleteAlarm();
    } else {
      await this.ctx.storage.setAlarm(at);
    }
    this.alarmAt = at;
  }

  /** Moves the alarm earlier if `at` comes before it; a too-early alarm just reschedules. */
  protected ensureAlarmBy(at: number) {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }

  // ---- hooks for what the device object adds (deployments, calls, chains) -------------

  /** The desired-deployments version agents compare with what they applied. */
  protected desiredVersion(): number | undefined {
    return undefined;
  }

  /** A job just ended (in the same transaction); `chained`: its call has a next step. */
  protected afterFinish(_jobId: string, _state: JobState, _chained: boolean, _now: number): void {}

  /** More work for the alarm, and the times it is due. */
  protected async alarmWork(_now: number): Promise<void> {}

  protected alarmTimes(): (number | null)[] {
    return [];
  }
}
