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
import { DEPLOYMENT_FLOORS_TABLE, DEPLOYMENT_TABLES } from "./device-deployments.js";
import { JobOutput } from "./job-output.js";
import { IndexFeed } from "./index-feed.js";
import { listingFingerprint, listingShard, listingShardName } from "../core/device-listing.js";
import { transition, type JobEvent } from "../core/lifecycle.js";
import { isOnline, leaseExpiry, nextAlarm, retryDelayMs } from "../core/timing.js";
import { sha256Hex, timingSafeEqual } from "../core/crypto.js";
import { JobIdMinter, randomBase32 } from "../protocol/ids.js";
import { isTerminal, jobLinks, type JobError, type JobLogs, type JobRef, type JobState, type JobSubmission, type JobView } from "../protocol/job.js";
import type { DeviceDescription, DeviceStatus, DeviceView, Health } from "../protocol/device.js";
import { AgentMessage, WS_PING, WS_PONG, type AgentLogLine, type Delivery, type Heartbeat, type LeasedJob, type LeaseRef, type LogBatch, type ResultReport, type ServerMessage } from "../protocol/agent.js";
import { missingInterfaces, type Arg } from "../protocol/wasm.js";
import { iso } from "../core/time.js";
import { JobRetention, type EndedJob } from "./job-retention.js";
import { jobFilesPrefix } from "../platform/r2-keys.js";
import { jobIndexShardName, jobIndexStub, registryStub, deviceListStub } from "../platform/stubs.js";
import { settingsFrom, type Settings } from "../platform/settings.js";
import type { Env } from "../platform/env.js";

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
  /** what the listing was last told (listingFingerprint), when, and the revision of the newest publish begun */
  published: string | null;
  published_at: number | null;
  published_revision: number;
};

/** Health alone (which changes on every heartbeat) reaches the device listing at most this often. */
const LISTING_HEALTH_REFRESH_MS = 10 * 60_000;
/** A publish that failed is tried again by the alarm after this long (or sooner, by a heartbeat). */
const LISTING_RETRY_MS = 5_000;
/** Namespaces this isolate has seen recorded in the registry (device objects of a class share an isolate). */
const namespacesNoted = new Set<string>();

export interface Poller {
  max: number;
  deliver(jobs: LeasedJob[]): void;
}

export type Disposition = "accepted" | "duplicate" | "stale";


/** The Worker forwards the agent's WebSocket upgrade with the credential's secret in this header. */
export const DEVICE_SECRET_HEADER = "x-wasmvisor-device-secret";
const AGENT_TAG = "agent";
const AGENT_LOG_ROWS = 1000;
/** Kept on the socket itself (it survives hibernation): what the agent can take, and when it connected. */
type SocketState = { credit: number; acceptedAt: number };

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
  /** Every state change of a job takes the next sequence number in the same statement: the index feed follows it. */
  private nextChange(): number {
    return this.index.nextChange();
  }

  private readonly index = new IndexFeed(
    this.sql,
    () => {
      const d = this.device;
      return d ? (rows) => jobIndexStub(this.env, d.id).apply(d.id, d.namespace, rows) : undefined;
    },
    {
      clock: this.clock,
      retryBaseMs: this.settings.retryBaseMs,
      wakeBy: (at) => this.ensureAlarmBy(at),
      target: () => (this.device ? jobIndexShardName(this.env, this.device.id) : undefined),
    },
  );
  private readonly retention = new JobRetention(
    this.sql,
    async () => (await registryStub(this.env).namespaceSettings(this.device!.namespace)).retention,
    (jobs) => this.deleteEndedJobs(jobs),
  );
  private readonly jobIds = new JobIdMinter();
  /** the last secret whose hash matched: spares a digest on every agent request */
  private verifiedSecret: string | null = null;

  /** A device id nobody registered (a stranger's guess, a read of an unknown id) gets no stored state. */
  protected override schemaOnFirstWrite() {
    return true;
  }

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
      DEPLOYMENT_FLOORS_TABLE,
      "ALTER TABLE device ADD COLUMN published TEXT; ALTER TABLE device ADD COLUMN published_at INTEGER; ALTER TABLE device ADD COLUMN published_revision INTEGER NOT NULL DEFAULT 0",
      // retention (docs/retention.md): ended jobs and idempotency keys by age
      "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL; CREATE INDEX idempotency_by_time ON idempotency (created_at)",
      // the index shard this object's feed feeds (index-feed.ts: a new one is fed from the start)
      "ALTER TABLE index_state ADD COLUMN target TEXT",
    ];
  }

  protected override async load() {
    // Keepalives are answered by the runtime itself, so an idle device's object can hibernate.
    this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(WS_PING, WS_PONG));
    if (!this.hasSchema) return; // never registered: nothing to load
    this.device = this.one<DeviceRow>("SELECT * FROM device LIMIT 1");
    this.index.load();
    this.alarmAt = await this.ctx.storage.getAlarm();
    this.index.resume(); // rows left over from before a restart
  }

  // ---- registration and presence -------------------------------------------------

  async register(deviceId: string, name: string | null, description: DeviceDescription, credentialHash: string, namespace: string): Promise<Outcome<DeviceView>> {
    if (this.device) return fail("conflict", `device ${deviceId} is already registered`);
    await this.noteNamespace(namespace); // before the row: a device is never stored unlisted
    this.ensureSchema();
    const now = this.clock.now();
    this.run(
      "INSERT INTO device (id, name, description, credential_hash, registered_at, namespace) VALUES (?, ?, ?, ?, ?, ?)",
      deviceId, name, JSON.stringify(description), credentialHash, now, namespace,
    );
    this.device = this.one<DeviceRow>("SELECT * FROM device LIMIT 1");
    await this.publishOrRetryLater();
    return ok(this.deviceView());
  }

  /** Makes the namespace listable (a global key's GET /v1/devices walks them); once per namespace per isolate. */
  private async noteNamespace(namespace: string) {
    if (namespacesNoted.has(namespace)) return;
    await registryStub(this.env).noteDeviceNamespace(namespace);
    if (namespacesNoted.size >= 10_000) namespacesNoted.clear();
    namespacesNoted.add(namespace);
  }

  /** The tenant this device belongs to (null: not registered). */
  async namespace(): Promise<string | null> {
    return this.device?.namespace ?? null;
  }

  /**
   * Every call from the Worker carries the caller's namespace (null: a key that
   * spans all of them); a device of another tenant answers as if it did not
   * exist, so a route that forgets its own check still cannot cross tenants.
   */
  protected visibleTo(namespace: string | null): boolean {
    return this.device !== undefined && (namespace === null || namespace === this.device.namespace);
  }

  async view(namespace: string | null): Promise<Outcome<DeviceView>> {
    return this.visibleTo(namespace) ? ok(this.deviceView()) : fail("not-found", "no such device");
  }

  /** The Worker's check of a device credential whose MAC it verified: the device's namespace while the credential is current, else null. */
  async credentialNamespace(secret: string): Promise<string | null> {
    return (await this.authenticate(secret)) ? this.device!.namespace : null;
  }

  /** Replaces the credential: the old one is refused from now on, and the connection made with it is closed. */
  async rotateCredential(namespace: string | null, credentialHash: string): Promise<Outcome<true>> {
    if (!this.visibleTo(namespace)) return fail("not-found", "no such device");
    this.run("UPDATE device SET credential_hash = ? WHERE id = ?", credentialHash, this.device!.id);
    this.device!.credential_hash = credentialHash;
    this.verifiedSecret = null;
    for (const ws of this.ctx.getWebSockets(AGENT_TAG)) ws.close(4001, "the device credential was rotated");
    for (const p of this.pollers.splice(0)) p.deliver([]);
    return ok(true);
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
    await this.publishOrRetryLater();
    return { serverTime: now, cancel: this.leasesNoLongerHeld(hb.runningJobs), deployments: this.desiredVersion() };
  }

  /** The agent's own recent log lines (runner.logs): the newest AGENT_LOG_ROWS are kept. */
  private keepAgentLogs(lines: AgentLogLine[]) {
    if (lines.length === 0) return;
    for (const l of lines) this.run("INSERT INTO agent_logs (at, level, msg, fields) VALUES (?, ?, ?, ?)", l.at, l.level, l.msg, l.fields ?? null);
    this.run("DELETE FROM agent_logs WHERE seq <= (SELECT MAX(seq) FROM agent_logs) - ?", AGENT_LOG_ROWS);
  }

  async agentLogs(namespace: string | null, limit: number): Promise<Outcome<{ lines: (AgentLogLine & { seq: number })[] }>> {
    if (!this.visibleTo(namespace)) return fail("not-found", "no such device");
    const rows = this.all<{ seq: number; at: number; level: AgentLogLine["level"]; msg: string; fields: string | null }>(
      "SELECT * FROM (SELECT * FROM agent_logs ORDER BY seq DESC LIMIT ?) ORDER BY seq", limit,
    );
    return ok({ lines: rows.map((r) => ({ seq: r.seq, at: r.at, level: r.level, msg: r.msg, ...(r.fields ? { fields: r.fields } : {}) })) });
  }

  /** Jobs the agent runs whose lease is no longer its own (canceled, expired): it should stop them. */
  private leasesNoLongerHeld(running: LeaseRef[]): string[] {
    return running
      .filter((ref) => {
        const row = this.one<{ state: JobState; lease_token: string | null }>("SELECT state, lease_token FROM jobs WHERE id = ?", ref.jobId);
        return !row || row.lease_token !== ref.leaseToken || !(row.state === "LEASED" || row.state === "RUNNING");
      })
      .map((ref) => ref.jobId);
  }

  private markSeen(now: number) {
    const d = this.device!;
    const wasOnline = d.status === "online";
    d.last_seen = now;
    d.status = "online";
    this.run("UPDATE device SET last_seen = ?, status = 'online' WHERE id = ?", now, d.id);
    if (!wasOnline) this.ctx.waitUntil(this.publishOrRetryLater());
    this.ensureAlarmBy(now + this.settings.heartbeatTimeoutMs);
  }

  /** A publish in flight, and what it carries: a second caller for the same change waits for it instead of sending it again. */
  private publishing: { fingerprint: string; done: Promise<void> } | null = null;

  /**
   * Keeps this device's row in the listing (GET /v1/devices) current by writing only what
   * changed: status, name or description at once, health alone at most every
   * LISTING_HEALTH_REFRESH_MS (GET /v1/devices/:id answers fresh health from this object).
   * A heartbeat that changes nothing listed writes nothing outside this object.
   */
  private publish(): Promise<void> {
    const d = this.device!;
    const now = this.clock.now();
    const shard = listingShard(d.id, this.settings.deviceListShards);
    const fingerprint = listingFingerprint(listingShardName(d.namespace, shard), d);
    if (this.publishing?.fingerprint === fingerprint) return this.publishing.done;
    if (d.published === fingerprint && d.published_at !== null && now - d.published_at < LISTING_HEALTH_REFRESH_MS) return Promise.resolve();
    // The revision is taken before the call, so of two publishes in flight the later state wins in the shard.
    const revision = ++d.published_revision;
    this.run("UPDATE device SET published_revision = ? WHERE id = ?", revision, d.id);
    const done = this.sendToListing(shard, revision).then(() => {
      if (d.published_revision !== revision) return; // a newer publish has begun: it records what it sent
      d.published = fingerprint;
      d.published_at = now;
      this.run("UPDATE device SET published = ?, published_at = ? WHERE id = ?", fingerprint, now, d.id);
    }).finally(() => {
      if (this.publishing?.done === done) this.publishing = null;
    });
    this.publishing = { fingerprint, done };
    return done;
  }

  /**
   * A listing that is slow or overloaded (a whole fleet changing status at once) must not fail
   * the device's own request: what was not published is not recorded as published, so the next
   * heartbeat or alarm sends it again.
   */
  private async publishOrRetryLater() {
    try {
      await this.publish();
      this.listingRetryAt = null;
    } catch (e) {
      console.warn(JSON.stringify({ level: "warn", msg: "device listing publish failed; will retry", deviceId: this.device!.id, error: String(e) }));
      this.listingRetryAt = this.clock.now() + LISTING_RETRY_MS;
      this.ensureAlarmBy(this.listingRetryAt);
    }
  }
  /** When the alarm tries again a publish that failed (null: none failed). */
  private listingRetryAt: number | null = null;

  private async sendToListing(shard: number, revision: number) {
    const d = this.device!;
    await deviceListStub(this.env, d.namespace, shard).publish({
      id: d.id,
      namespace: d.namespace,
      name: d.name,
      status: d.status,
      description: d.description,
      health: d.health,
      healthAt: d.health_at,
      lastSeen: d.last_seen,
      registeredAt: d.registered_at,
    }, revision);
  }

  /** A drained device gets no new work; what it runs finishes. `resume` undoes it. */
  async setDrained(namespace: string | null, drained: boolean): Promise<Outcome<DeviceView>> {
    if (!this.visibleTo(namespace)) return fail("not-found", "no such device");
    this.device!.drained = drained ? 1 : 0;
    this.run("UPDATE device SET drained = ? WHERE id = ?", this.device!.drained, this.device!.id);
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
    namespace: string | null,
    spec: JobSubmission,
    waitMs = 0,
    idempotency: { key: string; bodyHash: string } | null = null,
    requires: string[] = [],
  ): Promise<Outcome<{ done: boolean; job: JobView; replayed: boolean }>> {
    if (!this.visibleTo(namespace)) return fail("not-found", `device ${spec.device} is not registered`);
    const now = this.clock.now();
    if (idempotency) {
      const seen = this.one<{ body_hash: string; job_id: string }>("SELECT body_hash, job_id FROM idempotency WHERE key = ?", idempotency.key);
      if (seen && seen.body_hash !== idempotency.bodyHash) return fail("conflict", "this Idempotency-Key was used with a different request body");
      if (seen) {
        const replay = await this.resultWithin(seen.job_id, waitMs);
        return replay.ok ? ok({ ...replay.value, replayed: true }) : replay;
      }
    }
    const deadline = spec.deadline ? Date.parse(spec.deadline) : null;
    if (deadline !== null && deadline <= now) return fail("unprocessable", "the deadline has already passed");
    const jobId = this.newJobId(now);
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
    const out = waitMs > 0 && missing.length === 0 ? await this.waitFor(jobId, waitMs) : await this.resultWithin(jobId, waitMs);
    return out.ok ? ok({ ...out.value, replayed: false }) : out;
  }

  /**
   * Many jobs in one transaction, delivered together; answers their refs in the order given.
   * A job without an id gets one minted here. A job whose (derived) id is already here is
   * answered as it stands, not stored again: a retried batch (ids derived from its
   * Idempotency-Key) completes what an earlier attempt left undone.
   */
  async submitBatch(namespace: string | null, batch: { jobId?: string; spec: JobSubmission; requires: string[] }[]): Promise<Outcome<JobRef[]>> {
    if (!this.visibleTo(namespace)) return fail("not-found", "the device is not registered");
    const now = this.clock.now();
    const entries = batch.map((e) => ({ ...e, jobId: e.jobId ?? this.newJobId(now) }));
    const existing = new Map<string, JobState>();
    for (const { jobId } of entries) {
      const row = this.one<{ state: JobState }>("SELECT state FROM jobs WHERE id = ?", jobId);
      if (row) existing.set(jobId, row.state);
    }
    for (const { jobId, spec } of entries) {
      if (!existing.has(jobId) && spec.deadline && Date.parse(spec.deadline) <= now) return fail("unprocessable", "a deadline has already passed");
    }
    let earliestDeadline: number | null = null;
    const rejected = new Set<string>();
    this.ctx.storage.transactionSync(() => {
      for (const { jobId, spec, requires } of entries) {
        if (existing.has(jobId)) continue;
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
        state: leased.has(jobId) ? "LEASED" : existing.get(jobId) ?? (rejected.has(jobId) ? "REJECTED" : spec.start ? "QUEUED" : "CREATED"),
        links: jobLinks(jobId),
      })),
    );
  }

  /**
   * A new id for a job of this device. Only this object mints its device's job ids, and its
   * minter never repeats itself; an id from an earlier life of the object (the minter starts
   * afresh after an eviction, and the wall clock may have stepped back) is skipped.
   */
  protected newJobId(now: number): string {
    for (;;) {
      const id = this.jobIds.next(this.device!.id, now);
      if (!this.one("SELECT 1 AS x FROM jobs WHERE id = ?", id)) return id;
    }
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
  async start(namespace: string | null, jobId: string): Promise<Outcome<JobView>> {
    const row = this.visibleTo(namespace) ? this.jobRow(jobId) : undefined;
    if (!row) return fail("not-found", `no job ${jobId}`);
    const t = transition(row.state, { type: "start" }, counts(row));
    if (!t.ok) return fail("conflict", t.reason);
    this.run("UPDATE jobs SET state = 'QUEUED', updated_at = ?, change_seq = ? WHERE id = ?", this.clock.now(), this.nextChange(), jobId);
    this.index.schedule();
    this.dispatch();
    return ok(this.jobViewById(jobId)!);
  }

  /** Deletes an ended job with its result, logs and files. */
  async remove(namespace: string | null, jobId: string): Promise<Outcome<{ id: string }>> {
    const row = this.visibleTo(namespace) ? this.jobRow(jobId) : undefined;
    if (!row) return fail("not-found", `no job ${jobId}`);
    if (!isTerminal(row.state)) return fail("conflict", `job ${jobId} is ${row.state}; cancel it first`);
    await this.deleteEndedJobs([row]);
    return ok({ id: jobId });
  }

  /**
   * Ended jobs go with all they left: files in R2 first (if that fails, the rows stay and
   * the next attempt deletes both, so no file outlives its job), then in one transaction
   * the row, its logs and idempotency keys, and a tombstone that takes it off the index.
   */
  private async deleteEndedJobs(rows: EndedJob[]) {
    const files: string[] = [];
    for (const r of rows) {
      if (!r.call) continue; // only calls of deployed functions have files
      const listed = await this.env.MODULES.list({ prefix: jobFilesPrefix(r.id) });
      files.push(...listed.objects.map((o) => o.key));
    }
    for (let i = 0; i < files.length; i += 1000) await this.env.MODULES.delete(files.slice(i, i + 1000));
    this.ctx.storage.transactionSync(() => {
      for (const { id } of rows) {
        if (this.run("DELETE FROM jobs WHERE id = ?", id) === 0) continue; // already gone
        this.run("INSERT INTO index_tombstones (change_seq, job_id) VALUES (?, ?)", this.nextChange(), id);
        this.run("DELETE FROM idempotency WHERE job_id = ?", id);
        this.output.remove(id);
      }
    });
    this.index.schedule();
  }

  async exists(namespace: string | null): Promise<boolean> {
    return this.visibleTo(namespace);
  }

  /**
   * The fast path: when the agent is connected with credit and nothing is queued
   * ahead, record the job as leased and push it in the same turn. The row is
   * written before the message is sent: the output gate then holds the message
   * until the write commits, so a job the control plane never stored can never
   * run (sent first, a failed INSERT or commit left the agent running a job
   * nobody could see or report on).
   */
  protected pushAtOnce(jobId: string, spec: JobSubmission, deadline: number | null, now: number, call: CallRecord | null = null): boolean {
    const socket = this.agentSocket();
    if (!socket || this.device?.drained) return false;
    const credit = this.credit(socket);
    if (credit <= 0 || this.one("SELECT 1 AS x FROM jobs WHERE state = 'QUEUED' AND not_before <= ? LIMIT 1", now)) return false;
    const leaseToken = randomBase32(16);
    const expires = leaseExpiry(now, "delivered", spec.timeoutMs, this.settings);
    this.run(
      `INSERT INTO jobs (id, state, priority, module, function, args, timeout_ms, attempts, max_attempts, deadline, lease_token, lease_expires, created_at, updated_at, change_seq, call, deployment)
       VALUES (?, 'LEASED', ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      jobId, spec.priority, spec.module, spec.function, JSON.stringify(spec.args), spec.timeoutMs, spec.maxAttempts, deadline, leaseToken, expires, now, now, this.nextChange(),
      call ? JSON.stringify(call) : null, call?.ctx.deployment ?? null,
    );
    this.index.schedule();
    this.ensureAlarmBy(expires);
    this.send(socket, {
      t: "jobs",
      jobs: [{ jobId, leaseToken, leaseExpiresAt: expires, attempt: 1, module: spec.module, function: spec.function, args: spec.args, timeoutMs: spec.timeoutMs, ...(call ? { call: call.ctx } : {}) }],
    });
    this.setCredit(socket, credit - 1);
    return true;
  }

  async getJob(namespace: string | null, jobId: string): Promise<Outcome<JobView>> {
    const view = this.visibleTo(namespace) ? this.jobViewById(jobId) : undefined;
    return view ? ok(view) : fail("not-found", `no job ${jobId}`);
  }

  /** The job once it is terminal, or as it stands when `waitMs` runs out. */
  async awaitResult(namespace: string | null, jobId: string, waitMs: number): Promise<Outcome<{ done: boolean; job: JobView }>> {
    return this.visibleTo(namespace) ? this.resultWithin(jobId, waitMs) : fail("not-found", `no job ${jobId}`);
  }

  protected async resultWithin(jobId: string, waitMs: number): Promise<Outcome<{ done: boolean; job: JobView }>> {
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

  async cancel(namespace: string | null, jobId: string): Promise<Outcome<JobView>> {
    const row = this.visibleTo(namespace) ? this.jobRow(jobId) : undefined;
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

  /** Jobs an agent holds but has not started yet keep their short lease while it says so. */
  private renewHeld(refs: LeaseRef[]): number {
    const now = this.clock.now();
    let renewed = 0;
    for (const ref of refs) {
      renewed += this.run(
        "UPDATE jobs SET lease_expires = ? WHERE id = ? AND lease_token = ? AND state = 'LEASED'",
        leaseExpiry(now, "delivered", 0, this.settings), ref.jobId, ref.leaseToken,
      );
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

  async logs(namespace: string | null, jobId: string): Promise<Outcome<JobLogs>> {
    const job = this.visibleTo(namespace) ? this.one<{ state: JobState }>("SELECT state FROM jobs WHERE id = ?", jobId) : undefined;
    return job ? ok(this.output.read(jobId, isTerminal(job.state))) : fail("not-found", `no job ${jobId}`);
  }

  /** Server-sent events: the lines so far, then new ones as they arrive, then `end` when the job ends. */
  async followLogs(namespace: string | null, jobId: string): Promise<Outcome<ReadableStream<Uint8Array>>> {
    const job = this.visibleTo(namespace) ? this.one<{ state: JobState }>("SELECT state FROM jobs WHERE id = ?", jobId) : undefined;
    return job ? ok(this.output.follow(jobId, isTerminal(job.state) ? job.state : null)) : fail("not-found", `no job ${jobId}`);
  }

  // ---- the push transport: one WebSocket to the agent (hibernation API) ---------------

  override async fetch(request: Request): Promise<Response> {
    const secret = request.headers.get(DEVICE_SECRET_HEADER);
    if (!secret || !(await this.authenticate(secret))) return new Response("bad device credential", { status: 401 });
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return new Response("expected a WebSocket upgrade", { status: 426 });
    // One agent per device: a new connection replaces any older (possibly dead) one.
    // Each socket is stamped later than any it replaces (even within one millisecond): the newest is the one pushed to.
    let acceptedAt = this.clock.now();
    for (const old of this.ctx.getWebSockets(AGENT_TAG)) {
      acceptedAt = Math.max(acceptedAt, this.socketState(old).acceptedAt + 1);
      old.close(4000, "replaced by a newer connection");
    }
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [AGENT_TAG]);
    server.serializeAttachment({ credit: 0, acceptedAt } satisfies SocketState);
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
      case "started":
        this.applyAcks(msg.started);
        this.renewHeld(msg.held);
        return;
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

  /**
   * The socket to push to: the newest one still open. A replaced socket stays listed
   * while its close is unanswered (a half-dead link), and anything sent there is lost
   * until its lease expires.
   */
  protected agentSocket(): WebSocket | undefined {
    let newest: { ws: WebSocket; acceptedAt: number } | undefined;
    for (const ws of this.ctx.getWebSockets(AGENT_TAG)) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      const acceptedAt = this.socketState(ws).acceptedAt;
      if (!newest || acceptedAt > newest.acceptedAt) newest = { ws, acceptedAt };
    }
    return newest?.ws;
  }

  private socketState(ws: WebSocket): SocketState {
    const s = ws.deserializeAttachment() as Partial<SocketState> | null;
    return { credit: s?.credit ?? 0, acceptedAt: s?.acceptedAt ?? 0 };
  }

  private credit(ws: WebSocket): number {
    return this.socketState(ws).credit;
  }

  private setCredit(ws: WebSocket, credit: number) {
    ws.serializeAttachment({ ...this.socketState(ws), credit: Math.max(0, credit) } satisfies SocketState);
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
    this.ensureAlarmBy(now + this.retention.keepEndedMs());
    this.afterFinish(row.id, state, after?.chained === 1, now);
    if (waiters && after) {
      const view = jobView(after, this.device!.id);
      for (const w of [...waiters]) w(view);
    }
  }

  // ---- the one alarm: leases, retries, deadlines, presence --------------------------

  override async alarm() {
    if (!this.hasSchema) return; // never registered: nothing is due
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
    }
    if (d) await this.publishOrRetryLater(); // nothing to send unless something listed changed (or a publish failed before)
    this.dispatch();
    this.index.resume();
    if (this.device) await this.retention.run(now);
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
      this.listingRetryAt,
      this.index.wakeAt(),
      this.retention.dueAt(now),
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
