/**
 * The device's jobs as its callers see them: submission (one, a batch, with idempotency
 * keys), reads and waits, start, cancel and delete, and handing ready jobs to the agent
 * link. It decides nothing about states itself: every change is a life-cycle function.
 */
import { fail, ok, type Outcome } from "./rpc.js";
import type { AgentLink } from "./agent-link.js";
import type { DevicePresence } from "./device-presence.js";
import type { JobLifecycle } from "./job-lifecycle.js";
import type { JobRemoval } from "./job-removal.js";
import type { JobStore } from "./job-store.js";
import type { ResultWaiters, Waited } from "./result-waiters.js";
import type { AlarmTimers } from "./alarm-timers.js";
import type { CallRecord } from "./job-row.js";
import { nextAlarm } from "../core/timing.js";
import type { Clock } from "../core/clock.js";
import { isTerminal, jobLinks, type JobRef, type JobState, type JobSubmission, type TracedSubmission, type JobView } from "../protocol/job.js";
import type { LeasedJob } from "../protocol/agent.js";
import { missingInterfaces } from "../protocol/wasm.js";

export interface DeviceJobsParts {
  presence: DevicePresence;
  store: JobStore;
  lifecycle: JobLifecycle;
  removal: JobRemoval;
  waiters: ResultWaiters;
  link: AgentLink;
  timers: AlarmTimers;
  clock: Clock;
  transaction: (fn: () => void) => void;
}

export class DeviceJobs {
  constructor(private readonly p: DeviceJobsParts) {}

  private get deviceId() {
    return this.p.presence.device!.id;
  }

  /**
   * Queues the job (or only creates it, with `start: false`); with `waitMs`, also waits
   * for it to end (create-and-wait in one round trip). With an idempotency key, a repeat
   * of the same request answers the job it created; the same key with another body is a conflict.
   */
  async submit(spec: TracedSubmission, waitMs: number, idempotency: { key: string; bodyHash: string } | null, requires: string[]): Promise<Outcome<{ done: boolean; job: JobView; replayed: boolean }>> {
    const { store, lifecycle } = this.p;
    const now = this.p.clock.now();
    if (idempotency) {
      const seen = store.idempotent(idempotency.key);
      if (seen && seen.body_hash !== idempotency.bodyHash) return fail("conflict", "this Idempotency-Key was used with a different request body");
      if (seen) {
        const replay = await this.resultWithin(seen.job_id, waitMs);
        return replay.ok ? ok({ ...replay.value, replayed: true }) : replay;
      }
    }
    const deadline = spec.deadline ? Date.parse(spec.deadline) : null;
    if (deadline !== null && deadline <= now) return fail("unprocessable", "the deadline has already passed");
    const jobId = store.newJobId(this.deviceId, now);
    const missing = missingInterfaces(requires, this.p.presence.interfaces());
    if (missing.length > 0) {
      lifecycle.rejectAtIntake(jobId, spec, deadline, now, missing);
    } else if (!spec.start || !this.pushAtOnce(jobId, spec, deadline, now)) {
      lifecycle.enqueue(jobId, spec, deadline, now);
      if (spec.start) this.dispatch();
    }
    if (idempotency) store.rememberIdempotent(idempotency.key, idempotency.bodyHash, jobId, now);
    if (deadline !== null) this.p.timers.wakeBy(deadline);
    // A job just queued has not ended: wait for it without reading it back first.
    const out = waitMs > 0 && missing.length === 0 ? ok(await this.waitFor(jobId, waitMs)) : await this.resultWithin(jobId, waitMs);
    return out.ok ? ok({ ...out.value, replayed: false }) : out;
  }

  /**
   * Many jobs in one transaction, delivered together; answers their refs in the order given.
   * A job without an id gets one minted here. A job whose (derived) id is already here is
   * answered as it stands, not stored again: a retried batch (ids derived from its
   * Idempotency-Key) completes what an earlier attempt left undone.
   */
  submitBatch(batch: { jobId?: string; spec: TracedSubmission; requires: string[] }[]): Outcome<JobRef[]> {
    const { store, lifecycle } = this.p;
    const now = this.p.clock.now();
    const entries = batch.map((e) => ({ ...e, jobId: e.jobId ?? store.newJobId(this.deviceId, now) }));
    const existing = new Map<string, JobState>();
    for (const { jobId } of entries) {
      const state = store.state(jobId);
      if (state) existing.set(jobId, state);
    }
    for (const { jobId, spec } of entries) {
      if (!existing.has(jobId) && spec.deadline && Date.parse(spec.deadline) <= now) return fail("unprocessable", "a deadline has already passed");
    }
    let earliestDeadline: number | null = null;
    const rejected = new Set<string>();
    this.p.transaction(() => {
      for (const { jobId, spec, requires } of entries) {
        if (existing.has(jobId)) continue;
        const deadline = spec.deadline ? Date.parse(spec.deadline) : null;
        const missing = missingInterfaces(requires, this.p.presence.interfaces());
        if (missing.length > 0) {
          lifecycle.rejectAtIntake(jobId, spec, deadline, now, missing);
          rejected.add(jobId);
          continue;
        }
        lifecycle.enqueue(jobId, spec, deadline, now);
        earliestDeadline = nextAlarm([earliestDeadline, deadline]);
      }
    });
    if (earliestDeadline !== null) this.p.timers.wakeBy(earliestDeadline);
    const leased = new Set(this.dispatch());
    return ok(
      entries.map(({ jobId, spec }) => ({
        id: jobId,
        device: this.deviceId,
        state: leased.has(jobId) ? "LEASED" : existing.get(jobId) ?? (rejected.has(jobId) ? "REJECTED" : spec.start ? "QUEUED" : "CREATED"),
        links: jobLinks(jobId),
      })),
    );
  }

  /** Queues a job that was created without being queued. */
  start(jobId: string): Outcome<JobView> {
    if (!this.p.store.state(jobId)) return fail("not-found", `no job ${jobId}`);
    const started = this.p.lifecycle.start(jobId);
    if (!started.ok) return fail("conflict", started.reason);
    this.dispatch();
    return ok(this.view(jobId)!);
  }

  cancel(jobId: string): Outcome<JobView> {
    if (!this.p.store.state(jobId)) return fail("not-found", `no job ${jobId}`);
    const canceled = this.p.lifecycle.cancel(jobId, "canceled by request", this.p.clock.now());
    if (!canceled.ok) return fail("conflict", canceled.reason);
    if (canceled.was === "LEASED" || canceled.was === "RUNNING") this.p.link.notify({ t: "cancel", jobIds: [jobId] });
    return ok(this.view(jobId)!);
  }

  /** Deletes an ended job with its result, logs and files. */
  async remove(jobId: string): Promise<Outcome<{ id: string }>> {
    const row = this.p.store.row(jobId);
    if (!row) return fail("not-found", `no job ${jobId}`);
    if (!isTerminal(row.state)) return fail("conflict", `job ${jobId} is ${row.state}; cancel it first`);
    await this.p.removal.deleteEnded([row]);
    return ok({ id: jobId });
  }

  view(jobId: string): JobView | undefined {
    return this.p.store.view(jobId, this.deviceId);
  }

  /** The job once it is terminal, or as it stands when `waitMs` runs out. */
  async resultWithin(jobId: string, waitMs: number): Promise<Outcome<Waited>> {
    const view = this.view(jobId);
    if (!view) return fail("not-found", `no job ${jobId}`);
    if (isTerminal(view.state) || waitMs <= 0) return ok({ done: isTerminal(view.state), job: view });
    return ok(await this.waitFor(jobId, waitMs));
  }

  /** Waits for a job known to exist and not to have ended (no need to read it first). */
  private waitFor(jobId: string, waitMs: number): Promise<Waited> {
    return this.p.waiters.wait(jobId, waitMs, () => this.view(jobId)!);
  }

  /**
   * The fast path: when the agent is connected with credit and nothing is queued ahead,
   * the job is enqueued leased and pushed in the same turn (see AgentLink.pushOne).
   */
  pushAtOnce(jobId: string, spec: TracedSubmission, deadline: number | null, now: number, call: CallRecord | null = null): boolean {
    return this.p.link.pushOne(() =>
      this.p.presence.device?.drained || this.p.store.anyReady(now) ? null : this.p.lifecycle.enqueueLeased(jobId, spec, deadline, now, call),
    );
  }

  /** Hands ready jobs to the agent (none while drained). Answers the ids leased. */
  dispatch(): string[] {
    if (this.p.presence.device?.drained) return [];
    return this.p.link.dispatch((max) => this.leaseReady(max));
  }

  /** Leases up to `max` ready jobs (none while drained). */
  leaseReady(max: number): LeasedJob[] {
    if (this.p.presence.device?.drained) return [];
    const now = this.p.clock.now();
    return this.p.lifecycle.lease(this.p.store.ready(now, max), now);
  }
}
