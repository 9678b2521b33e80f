/**
 * The job life cycle of a device object: the only code that writes a job's `state`. Each
 * transition is one function (in the spirit of BullMQ's one script per transition), and
 * each asks src/core/lifecycle.ts's table (`transition`) before it writes, so that table
 * is the single source of truth for which changes exist. Every change stamps the row with
 * the index feed's next sequence in the same statement; a job's end also ends its output's
 * followers, wakes its waiters and is handed to `ended` (chain steps).
 */
import type { Sql } from "./sql-object.js";
import type { AlarmTimers } from "./alarm-timers.js";
import type { IndexFeed } from "./index-feed.js";
import type { JobOutput } from "./job-output.js";
import type { ResultWaiters } from "./result-waiters.js";
import { jobView, type CallRecord, type JobRow } from "./job-row.js";
import { lateEvent, reportedEvent, transition, type JobEvent } from "../core/lifecycle.js";
import { leaseExpiry, nextAlarm, retryDelayMs } from "../core/timing.js";
import { randomBase32 } from "../protocol/ids.js";
import { parseTraceparent } from "../core/trace.js";
import { JOB_STATES, type JobError, type JobState, type JobSubmission, type TracedSubmission } from "../protocol/job.js";
import type { LeasedJob, LeaseRef, ResultReport } from "../protocol/agent.js";
import type { Arg } from "../protocol/wasm.js";
import type { Clock } from "../core/clock.js";
import type { Settings } from "../platform/settings.js";

/** What life-cycle decisions need of a job row. */
export type JobCore = Pick<JobRow, "id" | "state" | "lease_token" | "attempts" | "max_attempts">;
const CORE_COLUMNS = "id, state, lease_token, attempts, max_attempts";
const counts = (row: JobCore) => ({ attempts: row.attempts, maxAttempts: row.max_attempts });
/** The states the table lets a success under the current lease end a job from (as SQL: a list of literals). */
const SUCCEEDABLE = JOB_STATES.filter((s) => {
  const t = transition(s, { type: "succeed" }, { attempts: 1, maxAttempts: 1 });
  return t.ok && t.to === "SUCCEEDED";
}).map((s) => `'${s}'`).join(", ");
/** The states the table lets an agent's ack start a job from (as SQL: a list of literals). */
const ACKABLE = JOB_STATES.filter((s) => transition(s, { type: "ack" }, { attempts: 1, maxAttempts: 1 }).ok).map((s) => `'${s}'`).join(", ");

export type Disposition = "accepted" | "duplicate" | "stale";

/**
 * What a result report does to its job as the row stands: the event it applies (null: none)
 * and how the agent is answered. A report of an earlier lease that ran out is a late result.
 */
function decide(row: JobCore | undefined, r: ResultReport): { event: JobEvent | null; disposition: Disposition } {
  if (row && row.lease_token !== r.leaseToken) {
    const late = lateEvent(r);
    // An earlier lease's run on this device finished after that lease ran out: its final outcome ends the job.
    if (late && transition(row.state, late, counts(row)).ok) return { event: late, disposition: "accepted" };
  }
  if (!row || row.lease_token !== r.leaseToken) return { event: null, disposition: "stale" };
  if (row.state !== "LEASED" && row.state !== "RUNNING") return { event: null, disposition: "duplicate" };
  return { event: reportedEvent(r), disposition: "accepted" };
}

/** A job as the agent receives it with its lease. */
const leasedJob = (jobId: string, leaseToken: string, expires: number, attempt: number, job: Pick<LeasedJob, "module" | "function" | "args" | "timeoutMs">, call: CallRecord | null, traceparent: string | null | undefined): LeasedJob => ({
  jobId, leaseToken, leaseExpiresAt: expires, attempt, module: job.module, function: job.function, args: job.args, timeoutMs: job.timeoutMs, ...(call ? { call: call.ctx } : {}),
  ...(traceparent ? { traceparent } : {}),
});
export type Refusal = { ok: false; reason: string };

export interface LifecycleParts {
  sql: Sql;
  transaction: (fn: () => void) => void;
  clock: Clock;
  settings: Settings;
  feed: IndexFeed;
  output: JobOutput;
  waiters: ResultWaiters;
  timers: AlarmTimers;
  /** how long ended jobs are kept (the alarm is set for their removal) */
  keepEndedMs: () => number;
  deviceId: () => string;
  /** a job just ended (in the same transaction); `chained`: its call has a next step */
  ended: (jobId: string, state: JobState, chained: boolean, now: number) => void;
}

type Answered = { reports: ResultReport[]; now: number; dispositions: { jobId: string; disposition: Disposition }[] | null };

export class JobLifecycle {
  /** results answered to their waiters and not yet written (answerEarly) */
  private readonly answered: Answered[] = [];

  constructor(private readonly p: LifecycleParts) {}

  /** enqueue: a new job, CREATED (`start: false`) or QUEUED. */
  enqueue(jobId: string, spec: TracedSubmission, deadline: number | null, now: number, call: CallRecord | null = null) {
    this.writeAnswered();
    this.p.sql.run`INSERT INTO jobs (id, state, priority, module, function, args, timeout_ms, max_attempts, deadline, created_at, updated_at, change_seq, call, deployment, traceparent)
       VALUES (${jobId}, ${spec.start ? "QUEUED" : "CREATED"}, ${spec.priority}, ${spec.module}, ${spec.function}, ${JSON.stringify(spec.args)}, ${spec.timeoutMs}, ${spec.maxAttempts}, ${deadline}, ${now}, ${now}, ${this.p.feed.nextChange()}, ${call ? JSON.stringify(call) : null}, ${call?.ctx.deployment ?? null}, ${spec.traceparent ?? null})`;
    this.p.feed.schedule();
  }

  /** enqueue and lease in one statement (the push fast path): a new job, LEASED for its first attempt. */
  enqueueLeased(jobId: string, spec: TracedSubmission, deadline: number | null, now: number, call: CallRecord | null = null): LeasedJob {
    this.writeAnswered();
    if (!transition("QUEUED", { type: "lease" }, { attempts: 0, maxAttempts: spec.maxAttempts }).ok) throw new Error("the life cycle refuses to lease a new job");
    const leaseToken = randomBase32(16);
    const expires = leaseExpiry(now, "delivered", spec.timeoutMs, this.p.settings);
    this.p.sql.run`INSERT INTO jobs (id, state, priority, module, function, args, timeout_ms, attempts, max_attempts, deadline, lease_token, lease_expires, created_at, updated_at, change_seq, call, deployment, traceparent)
       VALUES (${jobId}, 'LEASED', ${spec.priority}, ${spec.module}, ${spec.function}, ${JSON.stringify(spec.args)}, ${spec.timeoutMs}, 1, ${spec.maxAttempts}, ${deadline}, ${leaseToken}, ${expires}, ${now}, ${now}, ${this.p.feed.nextChange()}, ${call ? JSON.stringify(call) : null}, ${call?.ctx.deployment ?? null}, ${spec.traceparent ?? null})`;
    this.p.feed.schedule();
    this.p.timers.wakeBy(expires);
    return leasedJob(jobId, leaseToken, expires, 1, spec, call, spec.traceparent);
  }

  /** reject at intake: a job the device cannot run is recorded REJECTED at once, with what is missing. */
  rejectAtIntake(jobId: string, spec: TracedSubmission, deadline: number | null, now: number, missing: string[]) {
    this.enqueue(jobId, { ...spec, start: false }, deadline, now);
    const error: JobError = { kind: "link-error", message: `device ${this.p.deviceId()} does not provide: ${missing.join(", ")}` };
    this.apply(this.core(jobId)!, { type: "reject" }, now, null, error);
  }

  /** refuse: a job that cannot be started (a chain step whose input does not bind) ends FAILED. */
  refuse(jobId: string, error: JobError, now: number) {
    this.writeAnswered();
    this.apply(this.core(jobId)!, { type: "refuse" }, now, null, error);
  }

  /** start: a job created without being queued is queued. */
  start(jobId: string): Refusal | { ok: true } {
    this.writeAnswered();
    const row = this.core(jobId)!;
    const t = transition(row.state, { type: "start" }, counts(row));
    if (!t.ok) return t;
    this.p.sql.run`UPDATE jobs SET state = 'QUEUED', updated_at = ${this.p.clock.now()}, change_seq = ${this.p.feed.nextChange()} WHERE id = ${jobId}`;
    this.p.feed.schedule();
    return { ok: true };
  }

  /** lease: up to `max` ready jobs, LEASED for a short time until the agent says it started them; a ready job past its deadline expires instead. */
  lease(rows: JobRow[], now: number): LeasedJob[] {
    this.writeAnswered();
    const leased: LeasedJob[] = [];
    this.p.transaction(() => {
      for (const row of rows) {
        if (row.deadline !== null && row.deadline <= now) {
          this.apply(row, { type: "deadline_passed" }, now, null, { kind: "deadline", message: "the deadline passed before the job started" });
          continue;
        }
        if (!transition(row.state, { type: "lease" }, counts(row)).ok) continue;
        const leaseToken = randomBase32(16);
        const expires = leaseExpiry(now, "delivered", row.timeout_ms, this.p.settings);
        this.p.sql.run`UPDATE jobs SET state = 'LEASED', attempts = attempts + 1, lease_token = ${leaseToken}, lease_expires = ${expires}, updated_at = ${now}, change_seq = ${this.p.feed.nextChange()} WHERE id = ${row.id}`;
        const job = { module: row.module, function: row.function, args: JSON.parse(row.args) as Arg[], timeoutMs: row.timeout_ms };
        leased.push(leasedJob(row.id, leaseToken, expires, row.attempts + 1, job, row.call ? (JSON.parse(row.call) as CallRecord) : null, row.traceparent));
      }
    });
    if (leased.length > 0) {
      this.p.timers.wakeBy(leased[0]!.leaseExpiresAt);
      this.p.feed.schedule();
    }
    return leased;
  }

  /** ack (start): jobs the agent started are RUNNING, with the long lease (timeout + grace); answers how many. */
  ack(refs: LeaseRef[]): number {
    this.writeAnswered();
    const now = this.p.clock.now();
    let started = 0;
    let earliest: number | null = null;
    // One statement per job: the table's ack states and the lease in its WHERE, the new expiry
    // (leaseExpiry's "started" phase: now + the job's timeout + grace) computed in SQL, read back by RETURNING.
    const grace = leaseExpiry(now, "started", 0, this.p.settings);
    this.p.transaction(() => {
      for (const ref of refs) {
        const row = this.p.sql.one<{ lease_expires: number }>(
          `UPDATE jobs SET state = 'RUNNING', started_at = ?, lease_expires = ? + timeout_ms, updated_at = ?, change_seq = ?
           WHERE id = ? AND lease_token = ? AND state IN (${ACKABLE}) RETURNING lease_expires`,
          now, grace, now, this.p.feed.nextChange(), ref.jobId, ref.leaseToken,
        );
        if (!row) continue;
        earliest = nextAlarm([earliest, row.lease_expires]);
        started++;
      }
    });
    if (earliest !== null) this.p.timers.wakeBy(earliest);
    if (started > 0) this.p.feed.schedule();
    return started;
  }

  /**
   * renew: jobs an agent holds keep their lease while it says so (as BullMQ's lock manager extends
   * each active job's lock): at least the ack window from now, never shortened, whether started or
   * not (no state change).
   */
  renew(refs: LeaseRef[]): number {
    this.writeAnswered();
    const now = this.p.clock.now();
    let renewed = 0;
    for (const ref of refs) {
      // rowsWritten counts index entries too: one job per ref at most.
      renewed += Math.min(1, this.p.sql.run`UPDATE jobs SET lease_expires = MAX(lease_expires, ${leaseExpiry(now, "delivered", 0, this.p.settings)}) WHERE id = ${ref.jobId} AND lease_token = ${ref.leaseToken} AND state IN ('LEASED', 'RUNNING')`);
    }
    return renewed;
  }

  /**
   * succeed / fail / time out / reject, as the agent reports: results quoting the current
   * lease are applied (a retryable failure goes back to the queue); repeats are duplicates,
   * others stale: neither changes anything.
   */
  settle(reports: ResultReport[]): { jobId: string; disposition: Disposition }[] {
    this.writeAnswered();
    return this.settleAt(reports, this.p.clock.now());
  }

  /**
   * Answer before the commit (docs/design.md, "Results: answer before the commit"): the waiters of
   * jobs these reports end get the job as the write will leave it, computed from the rows without
   * writing anything (reads do not close the output gate), and the reports wait in memory as
   * answered-but-unwritten. `writeAnswered` writes them: the host calls it once the answers have
   * left the object, and every other change of a job here (each function of this class, and each
   * read of the job store) calls it first, so nothing can come between an answer and its write and
   * no read shows less than a caller was told. Answers the pending entry; its `dispositions` are
   * set once written. Reports nobody waits for are written at once.
   */
  answerEarly(reports: ResultReport[]): { dispositions: { jobId: string; disposition: Disposition }[] | null } {
    this.writeAnswered();
    const now = this.p.clock.now();
    const entry: Answered = { reports, now, dispositions: null };
    for (const r of reports) {
      if (!this.p.waiters.has(r.jobId)) continue;
      const row = this.p.sql.one<JobRow>("SELECT * FROM jobs WHERE id = ?", r.jobId);
      const decided = decide(row, r);
      if (!row || !decided.event) continue;
      const t = transition(row.state, decided.event, counts(row));
      if (!t.ok || t.to === "QUEUED") continue; // a retry: nobody is answered yet
      const ended: JobRow = {
        ...row, state: t.to, result: r.result == null ? null : JSON.stringify(r.result), error: r.error ? JSON.stringify(r.error) : null,
        lease_expires: null, finished_at: now, started_at: row.started_at ?? now, updated_at: now,
      };
      this.p.waiters.ended(row.id, jobView(ended, this.p.deviceId()));
    }
    this.answered.push(entry);
    return entry;
  }

  /** Whether answered results wait to be written. */
  get unwritten(): boolean {
    return this.answered.length > 0;
  }

  /** Writes every answered-but-unwritten report, in the order they came, at the time they were answered. */
  writeAnswered() {
    if (this.answered.length === 0) return;
    for (const entry of this.answered.splice(0)) entry.dispositions = this.settleAt(entry.reports, entry.now);
  }

  private settleAt(reports: ResultReport[], now: number): { jobId: string; disposition: Disposition }[] {
    const out: { jobId: string; disposition: Disposition }[] = [];
    this.p.transaction(() => {
      for (const r of reports) {
        // The common case in one statement: a success under the current lease ends the job.
        if (r.outcome === "succeeded" && r.logs.length === 0 && this.endWhere(r.jobId, { token: r.leaseToken, from: SUCCEEDABLE }, "SUCCEEDED", r.result, r.error, now)) {
          out.push({ jobId: r.jobId, disposition: "accepted" });
          continue;
        }
        const row = this.core(r.jobId);
        const decided = decide(row, r);
        if (decided.event && row) {
          if (r.logs.length) this.p.output.append(r.jobId, r.logs);
          this.apply(row, decided.event, now, r.result, r.error);
        }
        out.push({ jobId: r.jobId, disposition: decided.disposition });
      }
    });
    return out;
  }

  /** lease expiry: a job whose agent went silent past its lease is retried (attempts left) or FAILED. */
  expireLeases(rows: JobRow[], now: number) {
    this.writeAnswered();
    for (const row of rows) {
      this.apply(row, { type: "lease_expired" }, now, null, { kind: "lease-expired", message: `the agent did not report within the lease (attempt ${row.attempts})` });
    }
  }

  /** expire by deadline: a job not started by its deadline is EXPIRED. */
  expireDeadlines(rows: JobRow[], now: number) {
    this.writeAnswered();
    for (const row of rows) {
      this.apply(row, { type: "deadline_passed" }, now, null, { kind: "deadline", message: "the deadline passed before the job started" });
    }
  }

  /** device_lost: the job's offline policy fired; it ends EXPIRED, and its lease with it (answers false if it had ended). */
  lose(jobId: string, message: string, now: number): boolean {
    this.writeAnswered();
    const row = this.core(jobId);
    if (!row || !transition(row.state, { type: "device_lost" }, counts(row)).ok) return false;
    this.apply(row, { type: "device_lost" }, now, null, { kind: "device-offline", message });
    return true;
  }

  /** cancel: any job that has not ended is CANCELED (answers the refusal if it has). */
  cancel(jobId: string, message: string, now: number): Refusal | { ok: true; was: JobState } {
    this.writeAnswered();
    const row = this.core(jobId)!;
    const t = transition(row.state, { type: "cancel" }, counts(row));
    if (!t.ok) return t;
    this.apply(row, { type: "cancel" }, now, null, { kind: "canceled", message });
    return { ok: true, was: row.state };
  }

  private core(jobId: string): JobCore | undefined {
    return this.p.sql.one<JobCore>(`SELECT ${CORE_COLUMNS} FROM jobs WHERE id = ?`, jobId);
  }

  /** Applies one event the table allows: either back to the queue after a backoff, or to the end it names. */
  private apply(row: JobCore, event: JobEvent, now: number, result: unknown, error: JobError | null) {
    const t = transition(row.state, event, counts(row));
    if (!t.ok) return;
    this.p.feed.schedule();
    if (t.to === "QUEUED") {
      const notBefore = now + retryDelayMs(row.attempts, Math.random(), this.p.settings.retryBaseMs);
      this.p.sql.run`UPDATE jobs SET state = 'QUEUED', lease_token = NULL, lease_expires = NULL, not_before = ${notBefore}, error = ${error ? JSON.stringify(error) : null}, updated_at = ${now}, change_seq = ${this.p.feed.nextChange()} WHERE id = ${row.id}`;
      this.p.timers.wakeBy(notBefore);
    } else {
      this.end(row, t.to, result, error, now);
    }
  }

  /** A job ends: one statement writes the end and answers what follows from it. */
  private end(row: JobCore, state: JobState, result: unknown, error: JobError | null, now: number) {
    this.endWhere(row.id, null, state, result, error, now);
  }

  /**
   * A job ends: one statement writes the end and answers what follows from it. With `lease`, the
   * statement itself checks that the job still holds that lease in a state the table lets `state`
   * follow from (`from`), and answers false, writing nothing, if not.
   */
  private endWhere(jobId: string, lease: { token: string; from: string } | null, state: JobState, result: unknown, error: JobError | null, now: number): boolean {
    // Whether a chain step must hand on, and (only when someone waits) the row itself, so the waiter's answer needs no second read.
    const waited = this.p.waiters.has(jobId);
    const after = this.p.sql.one<JobRow & { chained: number }>(
      `UPDATE jobs SET state = ?, result = ?, error = ?, lease_expires = NULL, finished_at = ?, started_at = COALESCE(started_at, ?), updated_at = ?, change_seq = ?
       WHERE id = ?${lease ? ` AND lease_token = ? AND state IN (${lease.from})` : ""} RETURNING ${waited ? "*, " : "traceparent, created_at, started_at, attempts, "}(call IS NOT NULL AND json_extract(call, '$.next') IS NOT NULL) AS chained`,
      state, result == null ? null : JSON.stringify(result), error ? JSON.stringify(error) : null, now, now, now, this.p.feed.nextChange(), jobId,
      ...(lease ? [lease.token] : []),
    );
    if (lease && !after) return false;
    this.p.feed.schedule();
    this.p.output.end(jobId, state);
    // The device object's line for the job, in the trace of the request that submitted it (docs/observability.md).
    const trace = parseTraceparent(after?.traceparent);
    console.log(JSON.stringify({
      level: "info", msg: "job ended", time: new Date(now).toISOString(), jobId, device: this.p.deviceId(), state, attempts: after?.attempts,
      ...(after ? { waitMs: (after.started_at ?? now) - after.created_at } : {}), ...(error ? { error: error.kind } : {}),
      ...(trace ? { trace_id: trace.traceId, parent_span_id: trace.spanId } : {}),
    }));
    this.p.timers.wakeBy(now + this.p.keepEndedMs());
    this.p.ended(jobId, state, after?.chained === 1, now);
    if (waited && after) this.p.waiters.ended(jobId, jobView(after, this.p.deviceId()));
    return true;
  }

}
