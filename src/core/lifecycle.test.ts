import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { lateEvent, reportedEvent, transition, RETRYABLE_FAILURES, type JobEvent } from "./lifecycle.js";
import { JOB_STATES, isTerminal, FailureKind, type JobState } from "../protocol/job.js";

const once = { attempts: 1, maxAttempts: 1 };
const firstOfThree = { attempts: 1, maxAttempts: 3 };

describe("job life cycle", () => {
  it.each<[JobState, JobEvent, JobState]>([
    ["CREATED", { type: "start" }, "QUEUED"],
    ["QUEUED", { type: "lease" }, "LEASED"],
    ["LEASED", { type: "ack" }, "RUNNING"],
    ["RUNNING", { type: "succeed" }, "SUCCEEDED"],
    ["LEASED", { type: "succeed" }, "SUCCEEDED"],
    ["RUNNING", { type: "fail", kind: "trap" }, "FAILED"],
    ["RUNNING", { type: "time_out" }, "TIMED_OUT"],
    ["RUNNING", { type: "lease_expired" }, "FAILED"],
    ["QUEUED", { type: "deadline_passed" }, "EXPIRED"],
    ["CREATED", { type: "deadline_passed" }, "EXPIRED"],
    ["RUNNING", { type: "cancel" }, "CANCELED"],
    ["QUEUED", { type: "reject" }, "REJECTED"],
    // at intake: a job the device cannot run (it lacks a host interface) is recorded REJECTED
    ["CREATED", { type: "reject" }, "REJECTED"],
    // at intake: a chain step whose input does not bind to the next function is recorded FAILED
    ["QUEUED", { type: "refuse" }, "FAILED"],
    ["CREATED", { type: "refuse" }, "FAILED"],
  ])("%s --%o--> %s (no attempts left)", (from, event, to) => {
    expect(transition(from, event, once)).toEqual({ ok: true, to, retry: false });
  });

  it("retries a lost agent and a timeout while attempts remain, but not a trap or bad arguments", () => {
    expect(transition("RUNNING", { type: "lease_expired" }, firstOfThree)).toEqual({ ok: true, to: "QUEUED", retry: true });
    expect(transition("RUNNING", { type: "time_out" }, firstOfThree)).toEqual({ ok: true, to: "QUEUED", retry: true });
    expect(transition("RUNNING", { type: "fail", kind: "trap" }, firstOfThree)).toMatchObject({ to: "FAILED" });
    expect(transition("RUNNING", { type: "fail", kind: "bad-arguments" }, firstOfThree)).toMatchObject({ to: "FAILED" });
    expect(transition("RUNNING", { type: "time_out" }, { attempts: 3, maxAttempts: 3 })).toMatchObject({ to: "TIMED_OUT" });
  });

  it("refuses illegal transitions with a reason", () => {
    const t = transition("SUCCEEDED", { type: "succeed" }, once);
    expect(t.ok).toBe(false);
    expect(transition("QUEUED", { type: "ack" }, once).ok).toBe(false);
    expect(transition("CREATED", { type: "lease" }, once).ok).toBe(false);
    expect(transition("RUNNING", { type: "refuse" }, once).ok).toBe(false);
  });

  const event: fc.Arbitrary<JobEvent> = fc.oneof(
    fc.constantFrom<JobEvent>(
      { type: "start" }, { type: "lease" }, { type: "ack" }, { type: "succeed" }, { type: "time_out" },
      { type: "reject" }, { type: "refuse" }, { type: "lease_expired" }, { type: "deadline_passed" }, { type: "cancel" },
    ),
    fc.constantFrom(...FailureKind.options).map((kind): JobEvent => ({ type: "fail", kind })),
  );

  it("never leaves a terminal state, and every run of events ends within maxAttempts deliveries", () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 60 }), fc.integer({ min: 1, max: 5 }), (events, maxAttempts) => {
        let state: JobState = "CREATED";
        let attempts = 0;
        for (const e of events) {
          const t = transition(state, e, { attempts, maxAttempts });
          if (isTerminal(state)) expect(t.ok).toBe(false);
          if (!t.ok) continue;
          if (e.type === "lease") attempts++;
          expect(JOB_STATES).toContain(t.to);
          if (t.retry) {
            expect(attempts).toBeLessThan(maxAttempts);
            expect(e.type === "fail" ? RETRYABLE_FAILURES.has(e.kind) : true).toBe(true);
          }
          state = t.to;
        }
        expect(attempts).toBeLessThanOrEqual(maxAttempts);
      }),
    );
  });
});

describe("an agent's result report as an event", () => {
  const failed = (kind: (typeof FailureKind.options)[number]) => ({ outcome: "failed" as const, error: { kind, message: "m" } });

  it("for the current lease: the outcome it reports (a failure keeps its kind, an unnamed one is internal)", () => {
    expect(reportedEvent({ outcome: "succeeded", error: null })).toEqual({ type: "succeed" });
    expect(reportedEvent({ outcome: "timed_out", error: null })).toEqual({ type: "time_out" });
    expect(reportedEvent({ outcome: "rejected", error: null })).toEqual({ type: "reject" });
    expect(reportedEvent(failed("trap"))).toEqual({ type: "fail", kind: "trap" });
    expect(reportedEvent({ outcome: "failed", error: null })).toEqual({ type: "fail", kind: "internal" });
  });

  it("for an earlier lease: only a final outcome of that run (success, rejection, a failure that would fail again) ends the job", () => {
    expect(lateEvent({ outcome: "succeeded", error: null })).toEqual({ type: "late_result", outcome: "succeeded" });
    expect(lateEvent({ outcome: "rejected", error: null })).toEqual({ type: "late_result", outcome: "rejected" });
    expect(lateEvent({ outcome: "timed_out", error: null })).toBeNull();
    for (const kind of FailureKind.options) {
      expect(lateEvent(failed(kind)), kind).toEqual(RETRYABLE_FAILURES.has(kind) ? null : { type: "late_result", outcome: "failed" });
    }
    expect(lateEvent({ outcome: "failed", error: null }), "unnamed: internal, retryable").toBeNull();
  });
});
