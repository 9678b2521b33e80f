import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { isOnline, leaseExpiry, nextAlarm, retryDelayMs } from "./timing.js";

describe("timing decisions", () => {
  const s = { ackTimeoutMs: 10_000, graceMs: 5_000 };

  it("gives an unacknowledged delivery only the ack window, a started job its timeout plus grace", () => {
    expect(leaseExpiry(1_000, "delivered", 60_000, s)).toBe(11_000);
    expect(leaseExpiry(1_000, "started", 60_000, s)).toBe(66_000);
  });

  it("backs off exponentially with jitter, within [half, full] of the capped exponential", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.double({ min: 0, max: 1, noNaN: true }), (attempt, r) => {
        const exp = Math.min(60_000, 1_000 * 2 ** (attempt - 1));
        const d = retryDelayMs(attempt, r);
        expect(d).toBeGreaterThanOrEqual(Math.floor(exp / 2));
        expect(d).toBeLessThanOrEqual(exp);
      }),
    );
    expect(retryDelayMs(1, 0)).toBe(500);
    expect(retryDelayMs(3, 1)).toBe(4_000);
  });

  it("calls a device offline once its last sign of life is older than the timeout", () => {
    expect(isOnline(null, 10, 5)).toBe(false);
    expect(isOnline(10, 14, 5)).toBe(true);
    expect(isOnline(10, 15, 5)).toBe(false);
  });

  it("sets the one alarm to the earliest timer", () => {
    expect(nextAlarm([null, 30, undefined, 10, 20])).toBe(10);
    expect(nextAlarm([null, undefined])).toBeNull();
  });
});
