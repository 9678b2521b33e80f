import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { checkCron, countOccurrences, dueAt, isTimeZone, latestOccurrence, nextOccurrence, occurrenceId, type Timing } from "./schedule.js";

const T = (s: string) => Date.parse(s);
const MIN = 60_000;
const HOUR = 60 * MIN;

describe("checking expressions and zones", () => {
  const now = T("2026-01-01T00:00:00Z");
  it("accepts 5 and 6 fields, nicknames, and IANA zones", () => {
    expect(checkCron("*/15 * * * *", "UTC", now)).toEqual({ ok: true });
    expect(checkCron("*/10 * * * * *", "Europe/Berlin", now)).toEqual({ ok: true });
    expect(checkCron("@daily", "America/New_York", now)).toEqual({ ok: true });
  });

  it("says what is wrong with a bad expression, zone, or one that never occurs", () => {
    expect(checkCron("61 * * * *", "UTC", now)).toEqual({ ok: false, path: "timing.cron", message: expect.stringContaining("minute") });
    expect(checkCron("* * *", "UTC", now)).toEqual({ ok: false, path: "timing.cron", message: expect.stringContaining("has 3 field(s)") });
    expect(checkCron("* * * * * * *", "UTC", now)).toEqual({ ok: false, path: "timing.cron", message: expect.stringContaining("has 7 field(s)") });
    expect(checkCron("0 0 30 2 *", "UTC", now)).toEqual({ ok: false, path: "timing.cron", message: expect.stringContaining("never occurs") });
    expect(checkCron("* * * * *", "Mars/Olympus", now)).toEqual({ ok: false, path: "timing.timezone", message: expect.stringContaining("not an IANA time zone") });
    expect(isTimeZone("Europe/Berlin")).toBe(true);
    expect(isTimeZone("CEST+2")).toBe(false);
  });
});

describe("occurrences", () => {
  const hourly: Timing = { cron: "0 * * * *", timezone: "UTC" };

  it("the next one is strictly after the time given; the latest one is at or before it", () => {
    expect(nextOccurrence(hourly, T("2026-01-01T10:00:00Z"))).toBe(T("2026-01-01T11:00:00Z"));
    expect(nextOccurrence(hourly, T("2026-01-01T09:59:59.999Z"))).toBe(T("2026-01-01T10:00:00Z"));
    expect(latestOccurrence(hourly, 0, T("2026-01-01T10:00:00Z"))).toBe(T("2026-01-01T10:00:00Z"));
    expect(latestOccurrence(hourly, T("2026-01-01T10:00:00Z"), T("2026-01-01T10:59:00Z"))).toBeNull();
    expect(countOccurrences(hourly, T("2026-01-01T10:00:00Z"), T("2026-01-01T13:00:00Z"))).toBe(3);
  });

  it("a one-shot occurs once", () => {
    const once: Timing = { at: 5_000 };
    expect(nextOccurrence(once, 4_999)).toBe(5_000);
    expect(nextOccurrence(once, 5_000)).toBeNull();
    expect(latestOccurrence(once, 0, 5_000)).toBe(5_000);
    expect(latestOccurrence(once, 5_000, 9_000)).toBeNull();
  });

  it("reads the expression in its zone", () => {
    const nineInBerlin: Timing = { cron: "0 9 * * *", timezone: "Europe/Berlin" };
    expect(nextOccurrence(nineInBerlin, T("2026-01-10T00:00:00Z"))).toBe(T("2026-01-10T08:00:00Z")); // CET, UTC+1
    expect(nextOccurrence(nineInBerlin, T("2026-07-10T00:00:00Z"))).toBe(T("2026-07-10T07:00:00Z")); // CEST, UTC+2
    const nineInNewYork: Timing = { cron: "0 9 * * *", timezone: "America/New_York" };
    expect(nextOccurrence(nineInNewYork, T("2026-01-10T00:00:00Z"))).toBe(T("2026-01-10T14:00:00Z"));
  });

  it("DST: a local time that occurs twice (autumn) fires once; one that does not exist (spring) fires once, after the gap", () => {
    const twoThirty: Timing = { cron: "30 2 * * *", timezone: "Europe/Berlin" };
    // 2026-10-25: 02:30 happens at 00:30Z (CEST) and again at 01:30Z (CET)
    expect(countOccurrences(twoThirty, T("2026-10-24T12:00:00Z"), T("2026-10-25T12:00:00Z"))).toBe(1);
    // 2026-03-29: 02:00-03:00 local does not exist; the day still gets exactly one run
    expect(countOccurrences(twoThirty, T("2026-03-28T12:00:00Z"), T("2026-03-29T12:00:00Z"))).toBe(1);
    const spring = nextOccurrence(twoThirty, T("2026-03-28T12:00:00Z"))!;
    expect(spring).toBeGreaterThanOrEqual(T("2026-03-29T01:00:00Z")); // 03:00 CEST, the end of the gap
    expect(spring).toBeLessThan(T("2026-03-29T02:00:00Z"));
    // Hourly runs every real hour across both changes: 25 in the long day, 23 in the short one.
    const hourlyBerlin: Timing = { cron: "0 * * * *", timezone: "Europe/Berlin" };
    expect(countOccurrences(hourlyBerlin, T("2026-10-24T21:59:59Z"), T("2026-10-25T22:59:59Z"))).toBe(25);
    expect(countOccurrences(hourlyBerlin, T("2026-03-28T22:59:59Z"), T("2026-03-29T21:59:59Z"))).toBe(23);
  });

  it("names an occurrence by its schedule and instant", () => {
    expect(occurrenceId("saaaaaaaaaaaaaaaa", T("2026-01-01T10:00:00Z"))).toBe("saaaaaaaaaaaaaaaa@2026-01-01T10:00:00.000Z");
  });
});

describe("what is due", () => {
  const hourly: Timing = { cron: "0 * * * *", timezone: "UTC" };
  const t10 = T("2026-01-01T10:00:00Z");

  it("on time: the occurrence fires under either policy", () => {
    for (const policy of ["skip", "catch-up-once"] as const) {
      expect(dueAt(hourly, policy, MIN, t10 - HOUR, t10)).toEqual({ fire: t10, missed: 0, handledThrough: t10 });
    }
  });

  it("nothing is due again at the same time (a retried alarm fires nothing new)", () => {
    const first = dueAt(hourly, "skip", MIN, t10 - HOUR, t10);
    expect(dueAt(hourly, "skip", MIN, first.handledThrough, t10)).toEqual({ fire: null, missed: 0, handledThrough: t10 });
  });

  it("late past the grace: skip runs nothing and counts them missed; catch-up-once runs the latest once", () => {
    const now = t10 + 3 * HOUR + 5 * MIN; // 10:00 was handled; 11, 12, 13 passed unfired
    expect(dueAt(hourly, "skip", MIN, t10, now)).toEqual({ fire: null, missed: 3, handledThrough: t10 + 3 * HOUR });
    expect(dueAt(hourly, "catch-up-once", MIN, t10, now)).toEqual({ fire: t10 + 3 * HOUR, missed: 2, handledThrough: t10 + 3 * HOUR });
  });

  it("late within the grace: skip still runs the latest", () => {
    expect(dueAt(hourly, "skip", 10 * MIN, t10, t10 + 2 * HOUR + 5 * MIN)).toEqual({ fire: t10 + 2 * HOUR, missed: 1, handledThrough: t10 + 2 * HOUR });
  });

  const timings = fc.oneof(
    fc.constantFrom<Timing>(
      { cron: "*/5 * * * *", timezone: "UTC" },
      { cron: "0 * * * *", timezone: "Europe/Berlin" },
      { cron: "30 2 * * *", timezone: "Europe/Berlin" },
      { cron: "15 1,13 * * 1-5", timezone: "America/New_York" },
      { cron: "*/7 * * * *", timezone: "Asia/Kolkata" },
    ),
    fc.integer({ min: 0, max: 60 * 24 * HOUR }).map((d): Timing => ({ at: T("2026-03-01T00:00:00Z") + d })),
  );
  const start = T("2026-03-01T00:00:00Z");
  // Alarm times: increasing offsets from the start, some repeated (a retried alarm), across both DST changes of 2026.
  const from = start + 27 * 24 * HOUR; // near the spring change of 2026 (29 March)
  const alarms = fc.array(fc.integer({ min: 0, max: 12 * HOUR }), { minLength: 1, maxLength: 12 }).map((gaps) => {
    let t = from;
    return gaps.map((g) => (t += g));
  });

  it("property: over any run of alarms every occurrence is handled exactly once (fired + missed = all), never ahead of time", () => {
    fc.assert(
      fc.property(timings, fc.constantFrom("skip" as const, "catch-up-once" as const), fc.integer({ min: 1000, max: 2 * HOUR }), alarms, (timing, policy, grace, times) => {
        let handled = from - HOUR;
        let fired = 0;
        let missed = 0;
        const firedAt = new Set<number>();
        for (const now of times) {
          const due = dueAt(timing, policy, grace, handled, now);
          expect(due.handledThrough).toBeGreaterThanOrEqual(handled);
          expect(due.handledThrough).toBeLessThanOrEqual(now);
          if (due.fire !== null) {
            expect(due.fire).toBeLessThanOrEqual(now);
            expect(firedAt.has(due.fire)).toBe(false); // one run per occurrence
            firedAt.add(due.fire);
            fired++;
            if (policy === "skip") expect(now - due.fire).toBeLessThan(grace);
          }
          missed += due.missed;
          handled = due.handledThrough;
          // the same alarm again changes nothing
          expect(dueAt(timing, policy, grace, handled, now)).toEqual({ fire: null, missed: 0, handledThrough: handled });
        }
        expect(fired + missed).toBe(countOccurrences(timing, from - HOUR, times[times.length - 1]!));
        if (policy === "catch-up-once") {
          // one run per alarm that had anything due
          expect(fired).toBe(times.filter((now, i) => latestOccurrence(timing, i === 0 ? from - HOUR : times[i - 1]!, now) !== null).length);
        }
      }),
      { numRuns: 60 },
    );
  });

  it("property: the next occurrence is after the time given and nothing occurs in between", () => {
    fc.assert(
      fc.property(timings, fc.integer({ min: 0, max: 60 * 24 * HOUR }), (timing, offset) => {
        const after = start + offset;
        const next = nextOccurrence(timing, after);
        if (next === null) return;
        expect(next).toBeGreaterThan(after);
        expect(latestOccurrence(timing, after, next - 1)).toBeNull();
        expect(latestOccurrence(timing, after, next)).toBe(next);
      }),
      { numRuns: 100 },
    );
  });
});

describe("the minimum interval between occurrences (a cron that fires every second would flood a device)", () => {
  const now = T("2026-01-01T00:00:00Z");
  it("refuses expressions whose occurrences come closer than the minimum, naming the field", () => {
    expect(checkCron("* * * * * *", "UTC", now, 10_000)).toEqual({ ok: false, path: "timing.cron", message: expect.stringMatching(/1 s apart.*at least 10 s/) });
    expect(checkCron("*/2 * * * * *", "UTC", now, 10_000)).toEqual({ ok: false, path: "timing.cron", message: expect.stringMatching(/2 s apart/) });
    // A short gap only at the wrap of a minute is found too.
    expect(checkCron("0,58 * * * * *", "UTC", now, 10_000)).toEqual({ ok: false, path: "timing.cron", message: expect.stringMatching(/2 s apart/) });
    expect(checkCron("*/30 * * * * *", "UTC", now, 60_000)).toEqual({ ok: false, path: "timing.cron", message: expect.stringMatching(/30 s apart.*at least 60 s/) });
  });
  it("accepts expressions at or above it", () => {
    expect(checkCron("*/10 * * * * *", "UTC", now, 10_000)).toEqual({ ok: true });
    expect(checkCron("* * * * *", "UTC", now, 60_000)).toEqual({ ok: true });
    expect(checkCron("@hourly", "Europe/Berlin", now, 60_000)).toEqual({ ok: true });
  });
});
