/**
 * What the device holds and does for deployments: its desired state (parts of deployments
 * the agent must apply), calls of deployed functions (arguments bound by name, files in
 * and out; a chain step that cannot be called is recorded FAILED so the chain shows where
 * it broke), and telling the agent when its desired state changed.
 */
import { fail, ok, type Outcome } from "./rpc.js";
import { prepareCall, type CallRequest } from "./call-intake.js";
import type { AgentLink } from "./agent-link.js";
import type { DeviceDeployments } from "./device-deployments.js";
import type { DeviceJobs } from "./device-jobs.js";
import type { JobLifecycle } from "./job-lifecycle.js";
import type { JobStore } from "./job-store.js";
import type { Waited } from "./result-waiters.js";
import type { Clock } from "../core/clock.js";
import type { DevicePart, DeviceDeploymentStatus } from "../protocol/deployment.js";

export interface DeviceCallsParts {
  deviceId: () => string;
  deployments: DeviceDeployments;
  jobs: DeviceJobs;
  store: JobStore;
  lifecycle: JobLifecycle;
  link: AgentLink;
  clock: Clock;
  transaction: (fn: () => void) => void;
}

export class DeviceCalls {
  constructor(private readonly p: DeviceCallsParts) {}

  /** Records (or replaces) this device's part of a deployment and tells the agent. */
  putDeployment(part: DevicePart): Outcome<DeviceDeploymentStatus> {
    const { deployments } = this.p;
    const replaced = deployments.status(part.deployment, this.p.deviceId());
    if (!deployments.put(part)) {
      return fail("conflict", `deployment ${part.deployment} is at a newer generation than ${part.generation} on this device`);
    }
    // Calls waiting for the generation being replaced would run against files and an instance that are gone.
    if (replaced && replaced.generation !== part.generation) this.cancelWaitingCalls(part.deployment, `deployment ${part.deployment} was redeployed`);
    this.notifyDeployments();
    return ok(deployments.status(part.deployment, this.p.deviceId())!);
  }

  /** Undeploys as of `generation`: the agent removes the files; calls still waiting for it are canceled. */
  removeDeployment(id: string, generation: number): Outcome<{ canceled: number }> {
    const removed = this.p.deployments.remove(id, generation);
    if (removed === "stale") return fail("conflict", `deployment ${id} is at a newer generation than ${generation} on this device`);
    if (removed === "absent") return fail("not-found", "deployment does not exist");
    const canceled = this.cancelWaitingCalls(id, `deployment ${id} was removed`);
    this.notifyDeployments();
    return ok({ canceled });
  }

  private cancelWaitingCalls(deployment: string, why: string): number {
    const waiting = this.p.store.waitingCalls(deployment);
    const now = this.p.clock.now();
    this.p.transaction(() => {
      for (const row of waiting) this.p.lifecycle.cancel(row.id, why, now);
    });
    return waiting.length;
  }

  /** The agent learns of a new desired state: over its socket, or by an open poll answered now. */
  notifyDeployments() {
    this.p.link.notify({ t: "deployments", version: this.p.deployments.version });
    this.p.link.releasePolls();
  }

  /**
   * A call of a deployed function: arguments bound by name and typed from the
   * function's description, input files already stored under their keys. A
   * chain step (`prev`) takes the previous step's output instead, and one that
   * cannot be called is recorded as a FAILED job so the chain shows where it
   * broke. The job id is given by the caller, so a repeated forward finds the
   * job it made.
   */
  async call(jobId: string, req: CallRequest, waitMs: number): Promise<Outcome<Waited>> {
    const { jobs, lifecycle } = this.p;
    if (this.p.store.state(jobId)) return jobs.resultWithin(jobId, waitMs);
    const found = this.p.deployments.lookup(req.deployment, req.module, req.function);
    if (!found.ok) return fail("not-found", found.detail);
    const { submission, call, problem } = prepareCall(this.p.deviceId(), found.ref, req);
    if (problem && !req.prev) return fail("validation", problem);
    const now = this.p.clock.now();
    if (problem) {
      lifecycle.enqueue(jobId, submission, null, now, call);
      lifecycle.refuse(jobId, { kind: "bad-arguments", message: problem }, now);
    } else if (!jobs.pushAtOnce(jobId, submission, null, now, call)) {
      lifecycle.enqueue(jobId, submission, null, now, call);
      jobs.dispatch();
    }
    return jobs.resultWithin(jobId, waitMs);
  }

  /** The key of an input file of a job (agents fetch only their own inputs). */
  inputFileKey(jobId: string, name: string): Outcome<string> {
    const input = this.p.store.callOf(jobId)?.inputs.find((i) => i.name === name);
    return input ? ok(input.key) : fail("not-found", `job ${jobId} has no input file ${name}`);
  }

  /** Whether the agent may upload output file `name` of this job now (it holds the lease, the function declares the file). */
  mayWriteOutput(jobId: string, leaseToken: string, name: string): Outcome<true> {
    if (!this.p.store.holdsLease(jobId, leaseToken)) return fail("conflict", "this lease is not current");
    if (!this.p.store.callOf(jobId)?.ctx.outputs.some((o) => o.name === name)) return fail("not-found", `job ${jobId} declares no output file ${name}`);
    return ok(true);
  }
}
