/**
 * Lease keeping: which jobs the agent holds, and telling the control plane so. Starts are acked
 * (retried until answered), every held lease is renewed every 2 s, and a job delivered again while
 * still held is answered at once, so a lost message costs a retry, never a lease (or a second run).
 */
import { LIMITS } from "../protocol/job.js";
import type { LeasedJob, LeaseRef } from "../protocol/agent.js";
import type { AgentLog } from "./agent-log.js";
import { jobTrace } from "./runner.js";

/** One message's worth of lease news: starts to acknowledge, other held leases to renew. */
export type LeaseUpdate = { started: LeaseRef[]; held: LeaseRef[] };
/** Sends one lease update; resolves when the control plane answered (within about `answerMs`). */
export type SendLeaseUpdate = (update: LeaseUpdate, answerMs: number) => Promise<unknown>;

/** Starts are acknowledged after this delay, unless the job has already ended: fast jobs need no ack. */
const ACK_DELAY_MS = 200;
/** An ack not answered is sent again this soon (and an ack over the WebSocket is given up on after ACK_ANSWER_MS). */
const ACK_RETRY_MS = 500;
const ACK_ANSWER_MS = 1_500;
/** Every lease held (waiting or running) is renewed this often: well inside the control plane's ack window. */
const RENEW_INTERVAL_MS = 2_000;

const refOf = (l: LeasedJob): LeaseRef => ({ jobId: l.jobId, leaseToken: l.leaseToken });

export class LeaseKeeper {
  /** every job the agent holds: waiting for a thread or running */
  private readonly leases = new Map<string, LeasedJob>();
  private readonly running = new Set<string>();
  /** started jobs whose start the control plane has not acknowledged yet */
  private readonly unacked = new Map<string, LeaseRef>();
  private ackTimer: NodeJS.Timeout | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private updateInFlight = false;
  private updateAgain = false;
  private stopped = false;

  constructor(private readonly send: SendLeaseUpdate, private readonly log: AgentLog) {}

  /** Renews what is held from now on, every RENEW_INTERVAL_MS. */
  start() {
    this.renewTimer = setInterval(() => void this.update(), RENEW_INTERVAL_MS);
  }

  /** No more updates: the control plane takes back what is still held when its leases run out. */
  stop() {
    this.stopped = true;
    if (this.renewTimer) clearInterval(this.renewTimer);
  }

  /** How many jobs the agent holds (running or waiting for a thread). */
  get size(): number {
    return this.leases.size;
  }

  holds(jobId: string): boolean {
    return this.leases.has(jobId);
  }

  /** The leases held, as the heartbeat reports them. */
  refs(): LeaseRef[] {
    return [...this.leases.values()].map(refOf);
  }

  hold(job: LeasedJob) {
    this.leases.set(job.jobId, job);
  }

  /** The lease this agent holds for a job now (a redelivery replaces the one it first came with). */
  current(job: LeasedJob): LeasedJob {
    return this.leases.get(job.jobId) ?? job;
  }

  /** The job's run ended: its lease is no longer held (its result quotes the lease it held last). */
  release(job: LeasedJob): LeasedJob {
    const last = this.current(job);
    this.leases.delete(job.jobId);
    this.running.delete(job.jobId);
    this.unacked.delete(job.jobId);
    return last;
  }

  /** The job began running in a thread: its start is acked shortly (unless it ends first). */
  started(job: LeasedJob) {
    this.running.add(job.jobId);
    this.unacked.set(job.jobId, refOf(this.current(job)));
    this.updateSoon(ACK_DELAY_MS);
  }

  /**
   * The control plane delivered again a job this agent still holds (its lease ran out while an ack or a
   * renewal was lost). Silence would let that lease run out too and the job run twice: take the new
   * lease for the run already under way and answer at once (an ack if it started, a renewal if not).
   */
  redelivered(job: LeasedJob) {
    const held = this.leases.get(job.jobId)!;
    if (held.leaseToken !== job.leaseToken) this.leases.set(job.jobId, { ...held, leaseToken: job.leaseToken, leaseExpiresAt: job.leaseExpiresAt, attempt: job.attempt });
    if (this.running.has(job.jobId)) this.unacked.set(job.jobId, refOf(job));
    this.log("info", "a job already in hand was delivered again; answering with an ack", { jobId: job.jobId, attempt: job.attempt, running: this.running.has(job.jobId), ...jobTrace(job) });
    this.updateSoon(0);
  }

  private updateSoon(delayMs: number) {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      void this.update();
    }, delayMs);
  }

  /**
   * Tells the control plane which leases this agent holds (as BullMQ's lock manager extends its jobs'
   * locks): starts not yet acknowledged are sent as acks until an answer comes, and every other lease
   * held, running or waiting for a thread, is renewed. Also called at once when a new link opens, so
   * what was held across a reconnect is renewed (and acked) without waiting for the next renewal.
   */
  async update() {
    if (this.stopped) return;
    if (this.updateInFlight) {
      this.updateAgain = true; // a start acked during another update goes right after it, not at the next renewal
      return;
    }
    const started = [...this.unacked.values()];
    const held = [...this.leases.values()].filter((l) => !this.unacked.has(l.jobId)).map(refOf);
    if (started.length === 0 && held.length === 0) return;
    this.updateInFlight = true;
    try {
      for (let i = 0; i < Math.max(started.length, held.length); i += LIMITS.maxPollBatch) {
        await this.send({ started: started.slice(i, i + LIMITS.maxPollBatch), held: held.slice(i, i + LIMITS.maxPollBatch) }, ACK_ANSWER_MS);
      }
      for (const ref of started) if (this.unacked.get(ref.jobId)?.leaseToken === ref.leaseToken) this.unacked.delete(ref.jobId);
    } catch (e) {
      this.log("warn", "lease update not answered; retrying", { error: String(e), unacknowledgedStarts: this.unacked.size, held: held.length });
      if (this.unacked.size > 0) this.updateSoon(ACK_RETRY_MS);
    } finally {
      this.updateInFlight = false;
      if (this.updateAgain) {
        this.updateAgain = false;
        this.updateSoon(0);
      }
    }
  }
}
