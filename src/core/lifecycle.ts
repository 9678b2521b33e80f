/**
 * The job life cycle, written down once: the single source of truth for which
 * state changes exist. The device object's life cycle (src/durable/job-lifecycle.ts,
 * one function per transition) asks `transition` before every change it writes;
 * docs/design.md draws the same table.
 *
 *   CREATED --start--> QUEUED --lease--> LEASED --ack--> RUNNING
 *   LEASED|RUNNING --succeed--> SUCCEEDED
 *   LEASED|RUNNING --fail(retryable, attempts left)--> QUEUED (after backoff)
 *   LEASED|RUNNING --fail--> FAILED, --time_out--> TIMED_OUT
 *   CREATED|QUEUED|LEASED|RUNNING --reject--> REJECTED (the device cannot run it: at intake or by the agent)
 *   CREATED|QUEUED --refuse--> FAILED (at intake: a chain step whose input does not bind)
 *   LEASED|RUNNING --lease_expired--> QUEUED (attempts left) | FAILED
 *   CREATED|QUEUED --deadline_passed--> EXPIRED
 *   QUEUED (after an attempt)|LEASED|RUNNING --late_result--> SUCCEEDED | FAILED | REJECTED
 *     (the device's agent finished an earlier attempt after its lease ran out: running it again
 *     would be a duplicate, so a final outcome of that run ends the job)
 *   any non-terminal --cancel--> CANCELED
 *   CREATED|QUEUED|LEASED|RUNNING --device_lost--> EXPIRED (the job's offline policy, expire or move:
 *     its device was silent past afterMs; the lease is fenced, a late result from it changes nothing)
 */
import { isTerminal, type FailureKind, type JobState } from "../protocol/job.js";
import type { ResultReport } from "../protocol/agent.js";

export type JobEvent =
  | { type: "start" }
  | { type: "lease" }
  | { type: "ack" }
  | { type: "succeed" }
  | { type: "fail"; kind: FailureKind }
  | { type: "time_out" }
  | { type: "reject" }
  | { type: "refuse" }
  | { type: "lease_expired" }
  | { type: "deadline_passed" }
  | { type: "late_result"; outcome: "succeeded" | "failed" | "rejected" }
  | { type: "cancel" }
  | { type: "device_lost" };

export interface AttemptCounts {
  /** attempts started so far, including the one that just ended */
  attempts: number;
  maxAttempts: number;
}

export type Transition = { ok: true; to: JobState; retry: boolean } | { ok: false; reason: string };

/**
 * Failures that say something about the device or the moment (a lost agent, a
 * timeout) are retried; failures that say something about the job itself (a
 * trap, bad arguments, a missing export) would fail again and are not.
 */
export const RETRYABLE_FAILURES: ReadonlySet<FailureKind> = new Set(["lease-expired", "timeout", "module-unavailable", "internal"]);

const ACTIVE: ReadonlySet<JobState> = new Set(["LEASED", "RUNNING"]);
/** not started: created, or queued for delivery */
const WAITING: ReadonlySet<JobState> = new Set(["CREATED", "QUEUED"]);

export function transition(from: JobState, event: JobEvent, counts: AttemptCounts): Transition {
  const illegal = (): Transition => ({ ok: false, reason: `${event.type} is not allowed in state ${from}` });
  const retryOr = (terminal: JobState): Transition =>
    counts.attempts < counts.maxAttempts ? { ok: true, to: "QUEUED", retry: true } : { ok: true, to: terminal, retry: false };
  const done = (to: JobState): Transition => ({ ok: true, to, retry: false });

  switch (event.type) {
    case "start":
      return from === "CREATED" ? done("QUEUED") : illegal();
    case "lease":
      return from === "QUEUED" ? done("LEASED") : illegal();
    case "ack":
      return from === "LEASED" ? done("RUNNING") : illegal();
    case "succeed":
      return ACTIVE.has(from) ? done("SUCCEEDED") : illegal();
    case "fail":
      if (!ACTIVE.has(from)) return illegal();
      return RETRYABLE_FAILURES.has(event.kind) ? retryOr("FAILED") : done("FAILED");
    case "time_out":
      return ACTIVE.has(from) ? retryOr("TIMED_OUT") : illegal();
    case "reject":
      return ACTIVE.has(from) || WAITING.has(from) ? done("REJECTED") : illegal();
    case "refuse":
      return WAITING.has(from) ? done("FAILED") : illegal();
    case "lease_expired":
      return ACTIVE.has(from) ? retryOr("FAILED") : illegal();
    case "deadline_passed":
      return WAITING.has(from) ? done("EXPIRED") : illegal();
    case "cancel":
      return isTerminal(from) ? illegal() : done("CANCELED");
    case "device_lost":
      return isTerminal(from) ? illegal() : done("EXPIRED");
    case "late_result":
      if (!(ACTIVE.has(from) || (from === "QUEUED" && counts.attempts > 0))) return illegal();
      return done(event.outcome === "succeeded" ? "SUCCEEDED" : event.outcome === "rejected" ? "REJECTED" : "FAILED");
  }
}

/** An agent's report, as the event it is for the job whose current lease it quotes. */
export function reportedEvent(r: Pick<ResultReport, "outcome" | "error">): JobEvent {
  if (r.outcome === "succeeded") return { type: "succeed" };
  if (r.outcome === "timed_out") return { type: "time_out" };
  if (r.outcome === "rejected") return { type: "reject" };
  return { type: "fail", kind: r.error?.kind ?? "internal" };
}

/**
 * A report of an earlier lease (one that ran out), as the event it is: its final outcome
 * ends the job; a timeout or a retryable failure says something about that run, not the
 * job, so another attempt decides instead (null).
 */
export function lateEvent(r: Pick<ResultReport, "outcome" | "error">): JobEvent | null {
  if (r.outcome === "succeeded" || r.outcome === "rejected") return { type: "late_result", outcome: r.outcome };
  if (r.outcome === "failed" && !RETRYABLE_FAILURES.has(r.error?.kind ?? "internal")) return { type: "late_result", outcome: "failed" };
  return null;
}
