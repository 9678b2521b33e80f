/**
 * One object per device, composed of small parts that each own one concern (see
 * docs/design.md, "Device object parts"; wired in device-parts.ts): presence, the job
 * store, the job life cycle (the only writer of a job's state), job removal, result
 * waiters, the agent link and session, the alarm timers, the index feed, job output,
 * retention, agent logs, and for deployments: desired state, calls and chain forwards.
 * This class is the RPC surface the Worker calls and the alarm's order of work; it holds
 * no logic of its own beyond authenticating the agent and hiding other tenants' devices.
 */
import { SqlObject } from "./sql-object.js";
import { fail, ok, type Outcome } from "./rpc.js";
import { jobView, type CallRecord } from "./job-row.js";
import { DEVICE_MIGRATIONS } from "./device-schema.js";
import { composeDevice, type DeviceParts } from "./device-parts.js";
import type { Waited } from "./result-waiters.js";
import type { Disposition } from "./job-lifecycle.js";
import type { CallRequest } from "./call-intake.js";
import type { Env } from "../platform/env.js";
import { isTerminal, type JobLogs, type JobRef, type JobSubmission, type TracedSubmission, type JobView } from "../protocol/job.js";
import type { AppliedReport, DesiredDeployments, DevicePart, DeviceDeploymentStatus } from "../protocol/deployment.js";
import type { DeviceHealthSample } from "../protocol/rollout.js";
import type { DeviceDescription, DeviceView, Health } from "../protocol/device.js";
import { WS_PING, WS_PONG, type AgentSessionOpened, type CommandAck, type CommandView, type AgentLogLine, type Delivery, type Heartbeat, type LeaseRef, type LogBatch, type ResultReport } from "../protocol/agent.js";
import type { ScheduleCreate, ScheduleView } from "../protocol/schedule.js";
import { iso } from "../core/time.js";
import type { DesiredServices, ServiceSpec, ServiceView } from "../protocol/service.js";
import type { LogLine } from "../protocol/job.js";

export type { Disposition } from "./job-lifecycle.js";
export { DEVICE_SECRET_HEADER } from "./agent-session.js";
import { fencedDetail } from "./agent-session.js";
import { usage } from "../platform/usage.js";

const NOT_FOUND = "no such device";

export class DeviceObject extends SqlObject<Env> {
  private readonly p: DeviceParts = composeDevice(this.ctx, this.env, this.sql, this.clock);

  /** A device id nobody registered (a stranger's guess, a read of an unknown id) gets no stored state. */
  protected override schemaOnFirstWrite() {
    return true;
  }

  protected migrations() {
    return DEVICE_MIGRATIONS;
  }

  protected override async load() {
    // Keepalives are answered by the runtime itself, so an idle device's object can hibernate.
    this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(WS_PING, WS_PONG));
    if (!this.hasSchema) return; // never registered: nothing to load
    this.p.presence.load();
    this.p.feed.load();
    await this.p.timers.load();
    this.p.feed.resume(); // rows left over from before a restart
    this.p.events.outbox.resume();
  }

  /**
   * Runs an agent's request once its credential checks out and its session (`epoch`, 0 without one) is
   * the one in charge: a session taken over by a newer one is refused (fencing, agent-epochs.ts).
   */
  private async asAgent<T>(secret: string, fn: () => Outcome<T> | Promise<Outcome<T>>, epoch = 0): Promise<Outcome<T>> {
    if (!(await this.authenticate(secret))) return fail("unauthenticated", "bad device credential");
    const heard = this.p.session.heard(epoch);
    return heard.ok ? fn() : fail("fenced", fencedDetail(epoch, heard.current));
  }

  private visibleTo(namespace: string | null): boolean {
    return this.p.presence.visibleTo(namespace);
  }

  // ---- registration and presence -------------------------------------------------

  async register(deviceId: string, name: string | null, description: DeviceDescription, credentialHash: string, namespace: string): Promise<Outcome<DeviceView>> {
    if (this.p.presence.device) return fail("conflict", `device ${deviceId} is already registered`);
    await this.p.presence.register(deviceId, name, description, credentialHash, namespace, () => this.ensureSchema());
    return ok(this.deviceView());
  }

  /** The tenant this device belongs to (null: not registered). */
  async namespace(): Promise<string | null> {
    return this.p.presence.device?.namespace ?? null;
  }

  async view(namespace: string | null): Promise<Outcome<DeviceView>> {
    return this.visibleTo(namespace) ? ok(this.deviceView()) : fail("not-found", NOT_FOUND);
  }

  async exists(namespace: string | null): Promise<boolean> {
    return this.visibleTo(namespace);
  }

  /** The Worker's check of a device credential whose MAC it verified: the device's namespace while the credential is current, else null. */
  async credentialNamespace(secret: string): Promise<string | null> {
    return (await this.p.presence.authenticate(secret)) ? this.p.presence.device!.namespace : null;
  }

  /** Replaces the credential: the old one is refused from now on, and the connection made with it is closed. */
  async rotateCredential(namespace: string | null, credentialHash: string): Promise<Outcome<true>> {
    if (!this.visibleTo(namespace)) return fail("not-found", NOT_FOUND);
    this.p.presence.rotateCredential(credentialHash);
    this.p.link.disconnect(4001, "the device credential was rotated");
    return ok(true);
  }

  async authenticate(secret: string): Promise<boolean> {
    return this.p.presence.authenticate(secret);
  }

  async heartbeat(secret: string, hb: Heartbeat, epoch = 0): Promise<Outcome<{ serverTime: number; cancel: string[]; deployments: number | undefined; services: number | undefined }>> {
    return this.asAgent(secret, async () => ok(await this.p.session.heartbeat(hb)), epoch);
  }

  async agentLogs(namespace: string | null, limit: number): Promise<Outcome<{ lines: (AgentLogLine & { seq: number })[] }>> {
    return this.visibleTo(namespace) ? ok({ lines: this.p.agentLogs.read(limit) }) : fail("not-found", NOT_FOUND);
  }

  /** A drained device gets no new work; what it runs finishes. `resume` undoes it. */
  async setDrained(namespace: string | null, drained: boolean): Promise<Outcome<DeviceView>> {
    if (!this.visibleTo(namespace)) return fail("not-found", NOT_FOUND);
    this.p.presence.setDrained(drained);
    if (!drained) this.p.jobs.dispatch();
    return ok(this.deviceView());
  }

  /** Replaces the labels selectors match on; the listing row is republished at once. */
  async setLabels(namespace: string | null, labels: Record<string, string>): Promise<Outcome<DeviceView>> {
    if (!this.visibleTo(namespace)) return fail("not-found", NOT_FOUND);
    await this.p.presence.setLabels(labels);
    return ok(this.deviceView());
  }

  private deviceView(): DeviceView {
    const d = this.p.presence.device!;
    const now = this.clock.now();
    return {
      id: d.id,
      namespace: d.namespace,
      name: d.name,
      // Honest at once: a device silent past the timeout is shown offline even before the alarm records it.
      status: d.status === "online" && d.last_seen !== null && now - d.last_seen <= this.p.settings.heartbeatTimeoutMs ? "online" : "offline",
      description: JSON.parse(d.description) as DeviceDescription,
      health: d.health ? { ...(JSON.parse(d.health) as Health), at: iso(d.health_at)! } : null,
      registeredAt: iso(d.registered_at)!,
      lastSeenAt: iso(d.last_seen),
      queue: this.p.store.queueCounts(),
      drained: d.drained === 1,
      services: this.p.services.summary(),
      session: this.sessionView(),
      freshness: {
        asOf: iso(now)!,
        silentMs: d.last_seen === null ? null : now - d.last_seen,
        heartbeatTimeoutMs: this.p.settings.heartbeatTimeoutMs,
        stale: d.last_seen === null || now - d.last_seen > this.p.settings.heartbeatTimeoutMs,
        healthAgeMs: d.health_at === null ? null : now - d.health_at,
      },
      reconcile: this.p.deployments.reconcileView(),
    };
  }

  // ---- jobs ------------------------------------------------------------------------

  async submit(
    namespace: string | null,
    spec: TracedSubmission,
    waitMs = 0,
    idempotency: { key: string; bodyHash: string } | null = null,
    requires: string[] = [],
    /** JSON of the job's offline policy (job-failover.ts), or null */
    failover: string | null = null,
  ): Promise<Outcome<{ done: boolean; job: JobView; replayed: boolean }>> {
    if (!this.visibleTo(namespace)) return fail("not-found", `device ${spec.device} is not registered`);
    const out = await this.p.jobs.submit(spec, waitMs, idempotency, requires);
    if (out.ok && failover) {
      this.p.failover.record(out.value.job.id, JSON.parse(failover), spec, requires);
      await this.p.timers.reschedule(this.clock.now());
      out.value.job.failover = this.p.failover.view(out.value.job.id);
    }
    return out;
  }

  async submitBatch(namespace: string | null, batch: { jobId?: string; spec: TracedSubmission; requires: string[] }[]): Promise<Outcome<JobRef[]>> {
    return this.visibleTo(namespace) ? this.p.jobs.submitBatch(batch) : fail("not-found", "the device is not registered");
  }

  async start(namespace: string | null, jobId: string): Promise<Outcome<JobView>> {
    return this.visibleTo(namespace) ? this.p.jobs.start(jobId) : fail("not-found", `no job ${jobId}`);
  }

  async cancel(namespace: string | null, jobId: string): Promise<Outcome<JobView>> {
    return this.visibleTo(namespace) ? this.p.jobs.cancel(jobId) : fail("not-found", `no job ${jobId}`);
  }

  async remove(namespace: string | null, jobId: string): Promise<Outcome<{ id: string }>> {
    return this.visibleTo(namespace) ? this.p.jobs.remove(jobId) : fail("not-found", `no job ${jobId}`);
  }

  async getJob(namespace: string | null, jobId: string): Promise<Outcome<JobView>> {
    const view = this.visibleTo(namespace) ? this.p.jobs.view(jobId) : undefined;
    const failover = view && this.p.failover.view(jobId);
    if (view && failover) view.failover = failover;
    return view ? ok(view) : fail("not-found", `no job ${jobId}`);
  }

  /** The job once it is terminal, or as it stands when `waitMs` runs out. */
  async awaitResult(namespace: string | null, jobId: string, waitMs: number): Promise<Outcome<Waited>> {
    return this.visibleTo(namespace) ? this.p.jobs.resultWithin(jobId, waitMs) : fail("not-found", `no job ${jobId}`);
  }

  async logs(namespace: string | null, jobId: string): Promise<Outcome<JobLogs>> {
    const state = this.visibleTo(namespace) ? this.p.store.state(jobId) : undefined;
    return state ? ok(this.p.output.read(jobId, isTerminal(state))) : fail("not-found", `no job ${jobId}`);
  }

  /** Server-sent events: the lines so far, then new ones as they arrive, then `end` when the job ends. */
  async followLogs(namespace: string | null, jobId: string): Promise<Outcome<ReadableStream<Uint8Array>>> {
    const state = this.visibleTo(namespace) ? this.p.store.state(jobId) : undefined;
    return state ? ok(this.p.output.follow(jobId, isTerminal(state) ? state : null)) : fail("not-found", `no job ${jobId}`);
  }

  // ---- the agent: long poll and HTTP reports, or one WebSocket ------------------------

  async poll(secret: string, waitMs: number, max: number, epoch = 0): Promise<Outcome<Delivery>> {
    return this.asAgent(secret, async () => ok(await this.p.session.poll(waitMs, max)), epoch);
  }

  async ack(secret: string, started: LeaseRef[], held: LeaseRef[] = [], epoch = 0): Promise<Outcome<{ started: number; held: number }>> {
    return this.asAgent(secret, () => ok({ started: this.p.lifecycle.ack(started), held: this.p.lifecycle.renew(held) }), epoch);
  }

  async report(secret: string, reports: ResultReport[], epoch = 0): Promise<Outcome<{ jobId: string; disposition: Disposition }[]>> {
    return this.asAgent(secret, async () => {
      const out = await this.p.session.settle(reports);
      this.p.jobs.dispatch();
      return ok(out);
    }, epoch);
  }

  async postLogs(secret: string, batch: LogBatch, epoch = 0): Promise<Outcome<{ accepted: number }>> {
    return this.asAgent(secret, () => ok({ accepted: this.p.session.acceptLogs(batch) }), epoch);
  }

  // ---- fencing: agent sessions and their epochs (agent-epochs.ts) ----------------------

  /** Opens a new agent session: the next epoch; every older session is refused from now on. */
  async openSession(secret: string): Promise<Outcome<AgentSessionOpened>> {
    return (await this.authenticate(secret)) ? ok(await this.p.session.open()) : fail("unauthenticated", "bad device credential");
  }

  // ---- bounded commands: ids, expiries and outcomes (device-commands.ts) ------------------

  async commandAcks(secret: string, acks: CommandAck[], epoch = 0): Promise<Outcome<{ recorded: number }>> {
    return this.asAgent(secret, () => ok({ recorded: this.p.commands.answer(acks) }), epoch);
  }

  async commands(namespace: string | null, limit: number): Promise<Outcome<{ commands: CommandView[] }>> {
    return this.visibleTo(namespace) ? ok({ commands: this.p.commands.list(limit) }) : fail("not-found", NOT_FOUND);
  }

  private sessionView(): DeviceView["session"] {
    const s = this.p.epochs.view();
    return s ? { epoch: s.epoch, openedAt: iso(s.openedAt)!, refused: s.refused } : null;
  }

  override async fetch(request: Request): Promise<Response> {
    return this.p.session.upgrade(request);
  }

  override async webSocketMessage(ws: WebSocket, raw: string | ArrayBuffer) {
    usage.objectWebSocketMessages++;
    await this.p.session.message(ws, raw);
  }

  override async webSocketClose(ws: WebSocket, code: number) {
    this.p.link.closed(ws, code);
  }

  // ---- deployments: desired state, calls of deployed functions, chains -----------------

  /** Records (or replaces) this device's part of a deployment and tells the agent. */
  async putDeployment(namespace: string | null, part: DevicePart): Promise<Outcome<DeviceDeploymentStatus>> {
    return this.visibleTo(namespace) ? this.p.deviceCalls.putDeployment(part) : fail("not-found", "the device is not registered");
  }

  /** Undeploys as of `generation`: the agent removes the files; calls still waiting for it are canceled. */
  async removeDeployment(namespace: string | null, id: string, generation: number): Promise<Outcome<{ canceled: number }>> {
    return this.visibleTo(namespace) ? this.p.deviceCalls.removeDeployment(id, generation) : fail("not-found", "the device is not registered");
  }

  async deploymentStatus(namespace: string | null, id: string): Promise<DeviceDeploymentStatus | null> {
    return this.visibleTo(namespace) ? this.p.deployments.status(id, this.p.deviceId()) : null;
  }

  // ---- rollouts (rollout-object.ts): the part held, the gate's sample, releasing the kept generation ----

  async deploymentPart(namespace: string | null, id: string): Promise<DevicePart | null> {
    return this.visibleTo(namespace) ? this.p.deployments.part(id) : null;
  }

  /** What a rollout's health gate reads: this deployment's state here, silence, its calls since `since`, and crashes of services on the version (`digests`: its modules). */
  async rolloutSample(namespace: string | null, id: string, since: number, digests: string[] = []): Promise<DeviceHealthSample | null> {
    if (!this.visibleTo(namespace)) return null;
    const d = this.p.presence.device!;
    const status = this.p.deployments.status(id, d.id);
    const calls = this.p.deployments.callOutcomes(id, since);
    const crashes = this.p.services.crashesOf(id, digests, since);
    return {
      deploymentState: status?.state ?? null, deploymentReason: status?.reason ?? null, generation: status?.generation ?? null, silentMs: d.last_seen === null ? null : this.clock.now() - d.last_seen,
      calls: calls.calls, failedCalls: calls.failed, services: crashes.services, serviceCrashes: crashes.crashes, crashedServices: crashes.names,
    };
  }

  async releaseKept(namespace: string | null, id: string, generation: number): Promise<boolean> {
    if (!this.visibleTo(namespace) || !this.p.deployments.releaseKept(id, generation)) return false;
    this.p.deviceCalls.notifyDeployments();
    return true;
  }

  async desiredDeployments(secret: string, epoch = 0): Promise<Outcome<DesiredDeployments>> {
    return this.asAgent(secret, () => ok(this.p.deployments.desired()), epoch);
  }

  async reportDeployments(secret: string, states: AppliedReport["states"], epoch = 0): Promise<Outcome<{ updated: number }>> {
    return this.asAgent(secret, () => ok({ updated: this.p.deployments.report(states) }), epoch);
  }

  /**
   * A call of a deployed function (see DeviceCalls.call). `namespace` is the caller's (for a
   * chain step, the previous step's device's): a call from another tenant is refused.
   */
  async call(namespace: string | null, jobId: string, req: CallRequest, waitMs = 0): Promise<Outcome<Waited>> {
    return this.visibleTo(namespace) ? this.p.deviceCalls.call(jobId, req, waitMs) : fail("not-found", "the device is not registered");
  }

  /** The key of an input file of a job this device holds the lease of (agents fetch only their own inputs). */
  async inputFileKey(secret: string, jobId: string, name: string, epoch = 0): Promise<Outcome<string>> {
    return this.asAgent(secret, () => this.p.deviceCalls.inputFileKey(jobId, name), epoch);
  }

  /** Whether the agent may upload output file `name` of this job now (it holds the lease, the function declares the file). */
  async mayWriteOutput(secret: string, jobId: string, leaseToken: string, name: string, epoch = 0): Promise<Outcome<true>> {
    return this.asAgent(secret, () => this.p.deviceCalls.mayWriteOutput(jobId, leaseToken, name), epoch);
  }

  async mayReadDataFile(secret: string, deployment: string, digest: string): Promise<boolean> {
    return (await this.authenticate(secret)) && this.p.deployments.holdsDataFile(deployment, digest);
  }

  /** Calls of deployed functions, newest first (the wasmiot facade's request history). */
  async calls(namespace: string | null, limit: number, jobId: string | null = null): Promise<{ job: JobView; call: CallRecord }[]> {
    if (!this.visibleTo(namespace)) return [];
    return this.p.store.calls(limit, jobId).map((r) => ({ job: jobView(r, this.p.deviceId()), call: JSON.parse(r.call!) as CallRecord }));
  }

  /** The newest succeeded call of `module` (and `fn`) that wrote file `name`: wasmiot's module_results route. */
  async latestOutput(namespace: string | null, module: string, fn: string | null, name: string): Promise<string | null> {
    return this.visibleTo(namespace) ? this.p.store.latestOutput(module, fn, name) : null;
  }

  /** The latest health the agent sent, and the device's description (the facade's health and device description). */
  async facadeInfo(namespace: string | null): Promise<{ description: DeviceDescription; health: Health | null } | null> {
    const d = this.p.presence.device;
    return d && this.visibleTo(namespace) ? { description: JSON.parse(d.description) as DeviceDescription, health: d.health ? (JSON.parse(d.health) as Health) : null } : null;
  }

  // ---- schedules: cron and one-shot starts of jobs (and services), fired once per occurrence ----

  async createSchedule(namespace: string | null, input: ScheduleCreate, requires: string[]): Promise<Outcome<ScheduleView>> {
    return this.visibleTo(namespace) ? this.p.schedules.create(input, requires) : fail("not-found", NOT_FOUND);
  }

  async listSchedules(namespace: string | null): Promise<Outcome<ScheduleView[]>> {
    return this.visibleTo(namespace) ? ok(this.p.schedules.list()) : fail("not-found", NOT_FOUND);
  }

  async getSchedule(namespace: string | null, id: string): Promise<Outcome<ScheduleView>> {
    return this.visibleTo(namespace) ? this.p.schedules.get(id) : fail("not-found", NOT_FOUND);
  }

  async pauseSchedule(namespace: string | null, id: string, paused: boolean): Promise<Outcome<ScheduleView>> {
    return this.visibleTo(namespace) ? this.p.schedules.setPaused(id, paused) : fail("not-found", NOT_FOUND);
  }

  async removeSchedule(namespace: string | null, id: string): Promise<Outcome<{ id: string }>> {
    return this.visibleTo(namespace) ? this.p.schedules.remove(id) : fail("not-found", NOT_FOUND);
  }

  // ---- services: desired in this object, supervised by the agent (docs/services.md) ------

  async createService(namespace: string | null, spec: ServiceSpec): Promise<Outcome<ServiceView>> {
    return this.visibleTo(namespace) ? this.p.services.create(spec) : fail("not-found", NOT_FOUND);
  }

  async listServices(namespace: string | null): Promise<Outcome<ServiceView[]>> {
    return this.visibleTo(namespace) ? ok(this.p.services.list()) : fail("not-found", NOT_FOUND);
  }

  async getService(namespace: string | null, name: string): Promise<Outcome<ServiceView>> {
    return this.visibleTo(namespace) ? this.p.services.get(name) : fail("not-found", NOT_FOUND);
  }

  /** suspend, resume, kill, cancel (a pending start) or reset (the restart budget) */
  async serviceAction(namespace: string | null, name: string, action: "suspend" | "resume" | "kill" | "cancel" | "reset"): Promise<Outcome<ServiceView>> {
    return this.visibleTo(namespace) ? this.p.services[action](name) : fail("not-found", NOT_FOUND);
  }

  async removeServices(namespace: string | null, names: string[]): Promise<Outcome<{ removed: string[]; absent: string[] }>> {
    return this.visibleTo(namespace) ? ok(this.p.services.remove(names)) : fail("not-found", NOT_FOUND);
  }

  async serviceLogs(namespace: string | null, name: string, limit: number, after: number): Promise<Outcome<{ lines: (LogLine & { seq: number })[] }>> {
    return this.visibleTo(namespace) ? this.p.services.logs(name, limit, after) : fail("not-found", NOT_FOUND);
  }

  /** The schedules part's hook: starts (or restarts) a service once per occurrence id. */
  async startServiceFromSchedule(namespace: string | null, name: string, occurrenceId: string, now: number): Promise<Outcome<{ started: boolean; run: number }>> {
    return this.visibleTo(namespace) ? this.p.services.startFromSchedule(name, occurrenceId, now) : fail("not-found", NOT_FOUND);
  }

  async desiredServices(secret: string, epoch = 0): Promise<Outcome<DesiredServices>> {
    return this.asAgent(secret, () => ok(this.p.services.desired()), epoch);
  }

  // ---- events (GET /v1/events): the generic publish for other parts (services, rollouts) ----

  /** Adds an event about this device to the namespace's stream (a kind like `service.crashed`). */
  async publishEvent(namespace: string | null, kind: string, fields: { job?: string | null; deployment?: string | null; data?: Record<string, string | number | boolean | null> }): Promise<Outcome<true>> {
    return this.visibleTo(namespace) ? (this.p.events.publish(kind, fields, this.p.deviceId()), ok(true)) : fail("not-found", NOT_FOUND);
  }

  // ---- the one alarm: leases, retries, deadlines, presence, feed, retention, chains ----

  override async alarm() {
    if (!this.hasSchema) return; // never registered: nothing is due
    const now = this.clock.now();
    this.p.timers.fired();
    this.p.transaction(() => {
      this.p.lifecycle.expireLeases(this.p.store.leasesExpiredBy(now), now);
      this.p.lifecycle.expireDeadlines(this.p.store.deadlinesPassedBy(now), now);
      this.p.commands.expireUnanswered(now);
    });
    this.p.presence.checkOnline(now);
    if (this.p.presence.device) await this.p.schedules.fire(now);
    this.p.services.startDue(now);
    await this.p.failover.run(now);
    if (this.p.presence.device) await this.p.presence.publishOrRetryLater(); // nothing to send unless something listed changed (or a publish failed before)
    this.p.jobs.dispatch();
    this.p.feed.resume();
    this.p.events.outbox.resume();
    this.p.tallies.resume(now);
    if (this.p.presence.device) await this.p.retention.run(now);
    await this.p.forwards.run(now);
    await this.p.timers.reschedule(this.clock.now());
  }
}

/** Registers this class as the one behind the DEVICES binding (see src/platform/env.ts). */
declare module "../platform/env.js" {
  interface DurableObjectClasses {
    DEVICES: DeviceObject;
  }
}
