/**
 * One object per device (DeviceQueue holds its registration, presence, job
 * queue, leases and transports): this class adds what the device must hold
 * and do for deployments: its desired state, calls of deployed functions
 * (arguments bound by name, files in and out), chain steps handed on from
 * the alarm, and what the wasmiot facade reads.
 */
import { fail, ok, type Outcome } from "./rpc.js";
import { jobView, type CallRecord, type JobRow } from "./job-row.js";
import { DeviceDeployments } from "./device-deployments.js";
import { ChainForwards } from "./chain-forward.js";
import { prepareCall, type CallRequest } from "./call-intake.js";
import { DeviceQueue } from "./device-queue.js";
import type { AppliedReport, DesiredDeployments, DevicePart, DeviceDeploymentStatus } from "../protocol/deployment.js";
import type { JobResult, JobState, JobView } from "../protocol/job.js";
import type { DeviceDescription, Health } from "../protocol/device.js";

export { DEVICE_SECRET_HEADER, type Disposition } from "./device-queue.js";

export class DeviceObject extends DeviceQueue {
  private readonly deployments = new DeviceDeployments(this.sql, this.clock);
  private readonly forwards = new ChainForwards(this.sql, this.env, this.settings.retryBaseMs, this.clock, () => this.device!.namespace);

  // ---- deployments: desired state, calls of deployed functions, chains -----------------

  /** Records (or replaces) this device's part of a deployment and tells the agent. */
  async putDeployment(namespace: string | null, part: DevicePart): Promise<Outcome<DeviceDeploymentStatus>> {
    if (!this.visibleTo(namespace)) return fail("not-found", "the device is not registered");
    const replaced = this.deployments.status(part.deployment, this.device!.id);
    if (!this.deployments.put(part)) {
      return fail("conflict", `deployment ${part.deployment} is at a newer generation than ${part.generation} on this device`);
    }
    // Calls waiting for the generation being replaced would run against files and an instance that are gone.
    if (replaced && replaced.generation !== part.generation) this.cancelWaitingCalls(part.deployment, `deployment ${part.deployment} was redeployed`);
    this.notifyDeployments();
    return ok(this.deployments.status(part.deployment, this.device!.id)!);
  }

  /** Undeploys as of `generation`: the agent removes the files; calls still waiting for it are canceled. */
  async removeDeployment(namespace: string | null, id: string, generation: number): Promise<Outcome<{ canceled: number }>> {
    if (!this.visibleTo(namespace)) return fail("not-found", "the device is not registered");
    const removed = this.deployments.remove(id, generation);
    if (removed === "stale") return fail("conflict", `deployment ${id} is at a newer generation than ${generation} on this device`);
    if (removed === "absent") return fail("not-found", "deployment does not exist");
    const canceled = this.cancelWaitingCalls(id, `deployment ${id} was removed`);
    this.notifyDeployments();
    return ok({ canceled });
  }

  private cancelWaitingCalls(deployment: string, why: string): number {
    const waiting = this.all<JobRow>("SELECT * FROM jobs WHERE deployment = ? AND state IN ('CREATED', 'QUEUED')", deployment);
    const now = this.clock.now();
    this.ctx.storage.transactionSync(() => {
      for (const row of waiting) this.finish(row, "CANCELED", null, { kind: "canceled", message: why }, now);
    });
    return waiting.length;
  }

  async deploymentStatus(namespace: string | null, id: string): Promise<DeviceDeploymentStatus | null> {
    return this.visibleTo(namespace) ? this.deployments.status(id, this.device!.id) : null;
  }

  async desiredDeployments(secret: string): Promise<Outcome<DesiredDeployments>> {
    if (!(await this.authenticate(secret))) return fail("unauthenticated", "bad device credential");
    return ok(this.deployments.desired());
  }

  async reportDeployments(secret: string, states: AppliedReport["states"]): Promise<Outcome<{ updated: number }>> {
    if (!(await this.authenticate(secret))) return fail("unauthenticated", "bad device credential");
    return ok({ updated: this.deployments.report(states) });
  }

  private notifyDeployments() {
    const version = this.deployments.version;
    const socket = this.agentSocket();
    if (socket) this.send(socket, { t: "deployments", version });
    for (const p of this.pollers.splice(0)) p.deliver([]);
  }

  /**
   * A call of a deployed function: arguments bound by name and typed from the
   * function's description, input files already stored under their keys. A
   * chain step (`prev`) takes the previous step's output instead, and one that
   * cannot be called is recorded as a FAILED job so the chain shows where it
   * broke. The job id is given by the caller, so a repeated forward finds the
   * job it made. `namespace` is the caller's (for a chain step, the previous
   * step's device's): a call from another tenant is refused.
   */
  async call(namespace: string | null, jobId: string, req: CallRequest, waitMs = 0): Promise<Outcome<{ done: boolean; job: JobView }>> {
    if (!this.visibleTo(namespace)) return fail("not-found", "the device is not registered");
    if (this.jobRow(jobId)) return this.resultWithin(jobId, waitMs);
    const found = this.deployments.lookup(req.deployment, req.module, req.function);
    if (!found.ok) return fail("not-found", found.detail);
    const { submission, call, problem } = prepareCall(this.device!.id, found.ref, req);
    if (problem && !req.prev) return fail("validation", problem);
    const now = this.clock.now();
    if (problem) {
      this.insertJob(jobId, submission, null, now, call);
      this.finish(this.jobRow(jobId)!, "FAILED", null, { kind: "bad-arguments", message: problem }, now);
    } else if (!this.pushAtOnce(jobId, submission, null, now, call)) {
      this.insertJob(jobId, submission, null, now, call);
      this.dispatch();
    }
    return this.resultWithin(jobId, waitMs);
  }

  /** The key of an input file of a job this device holds the lease of (agents fetch only their own inputs). */
  async inputFileKey(secret: string, jobId: string, name: string): Promise<Outcome<string>> {
    if (!(await this.authenticate(secret))) return fail("unauthenticated", "bad device credential");
    const row = this.jobRow(jobId);
    const call = row?.call ? (JSON.parse(row.call) as CallRecord) : null;
    const input = call?.inputs.find((i) => i.name === name);
    return input ? ok(input.key) : fail("not-found", `job ${jobId} has no input file ${name}`);
  }

  /** Whether the agent may upload output file `name` of this job now (it holds the lease, the function declares the file). */
  async mayWriteOutput(secret: string, jobId: string, leaseToken: string, name: string): Promise<Outcome<true>> {
    if (!(await this.authenticate(secret))) return fail("unauthenticated", "bad device credential");
    const row = this.jobRow(jobId);
    if (!row || row.lease_token !== leaseToken || (row.state !== "LEASED" && row.state !== "RUNNING")) return fail("conflict", "this lease is not current");
    const call = row.call ? (JSON.parse(row.call) as CallRecord) : null;
    if (!call?.ctx.outputs.some((o) => o.name === name)) return fail("not-found", `job ${jobId} declares no output file ${name}`);
    return ok(true);
  }

  async mayReadDataFile(secret: string, deployment: string, digest: string): Promise<boolean> {
    return (await this.authenticate(secret)) && this.deployments.holdsDataFile(deployment, digest);
  }

  /** Calls of deployed functions, newest first (the wasmiot facade's request history). */
  async calls(namespace: string | null, limit: number, jobId: string | null = null): Promise<{ job: JobView; call: CallRecord }[]> {
    if (!this.visibleTo(namespace)) return [];
    const rows = jobId
      ? this.all<JobRow>("SELECT * FROM jobs WHERE id = ? AND call IS NOT NULL", jobId)
      : this.all<JobRow>("SELECT * FROM jobs WHERE call IS NOT NULL ORDER BY seq DESC LIMIT ?", limit);
    return rows.map((r) => ({ job: jobView(r, this.device!.id), call: JSON.parse(r.call!) as CallRecord }));
  }

  /** The newest succeeded call of `module` (and `fn`) that wrote file `name`: wasmiot's module_results route. */
  async latestOutput(namespace: string | null, module: string, fn: string | null, name: string): Promise<string | null> {
    if (!this.visibleTo(namespace)) return null;
    const rows = this.all<{ id: string; result: string | null }>(
      `SELECT id, result FROM jobs WHERE state = 'SUCCEEDED' AND call IS NOT NULL AND json_extract(call, '$.ctx.module') = ?
         AND (? IS NULL OR function = ?) ORDER BY seq DESC LIMIT 50`,
      module, fn, fn,
    );
    return rows.find((r) => r.result && (JSON.parse(r.result) as JobResult).files?.some((f) => f.name === name))?.id ?? null;
  }

  /** The latest health the agent sent, and the device's description (the facade's health and device description). */
  async facadeInfo(namespace: string | null): Promise<{ description: DeviceDescription; health: Health | null } | null> {
    const d = this.device;
    return d && this.visibleTo(namespace) ? { description: JSON.parse(d.description) as DeviceDescription, health: d.health ? (JSON.parse(d.health) as Health) : null } : null;
  }

  // ---- hooks -----------------------------------------------------------------------

  protected override desiredVersion(): number {
    return this.deployments.version;
  }

  protected override afterFinish(jobId: string, state: JobState, chained: boolean, now: number) {
    if (state !== "SUCCEEDED" || !chained) return;
    this.forwards.queue(jobId, now);
    this.ensureAlarmBy(now);
  }

  protected override alarmWork(now: number) {
    return this.forwards.run(now);
  }

  protected override alarmTimes() {
    return [this.forwards.nextTry()];
  }
}

/** Registers this class as the one behind the DEVICES binding (see src/platform/env.ts). */
declare module "../platform/env.js" {
  interface DurableObjectClasses {
    DEVICES: DeviceObject;
  }
}
