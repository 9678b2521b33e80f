import { describe, expect, it } from "vitest";
import { Clock } from "./clock.js";

describe("Clock", () => {
  it("reads the system time until pinned, then moves only when told", () => {
    const clock = new Clock();
    const before = Date.now();
    expect(clock.now()).toBeGreaterThanOrEqual(before);
    clock.set(1_000);
    expect(clock.now()).toBe(1_000);
    clock.advance(250);
    expect(clock.now()).toBe(1_250);
    clock.release();
    expect(clock.now()).toBeGreaterThanOrEqual(before);
  });
});
