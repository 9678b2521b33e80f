import { describe, expect, it } from "vitest";
import { judgeDevice, pastThreshold, planWaves, rateAllowance, trippedGates } from "./rollout.js";
import { RolloutGate, RolloutStrategy } from "../protocol/rollout.js";

const gate = RolloutGate.parse({ applyTimeoutMs: 10_000, maxSilenceMs: 5_000, maxErrorRate: 0.2, minCalls: 5 });
const sample = (o: Partial<Parameters<typeof judgeDevice>[0]> = {}) => ({ deploymentState: "active", deploymentReason: null, generation: 7, silentMs: 100, calls: 0, failedCalls: 0, services: 0, serviceCrashes: 0, crashedServices: [] as string[], ...o });

describe("rollout decisions", () => {
  it("plans waves by count, percent and exponential growth", () => {
    expect(planWaves(10, RolloutStrategy.parse({ waveSize: { count: 3 } }))).toEqual([3, 3, 3, 1]);
    expect(planWaves(10, RolloutStrategy.parse({ waveSize: { percent: 25 } }))).toEqual([3, 3, 3, 1]);
    expect(planWaves(1000, RolloutStrategy.parse({ waveSize: { count: 10 }, exponentialRate: { incrementFactor: 2 } }))).toEqual([10, 20, 40, 80, 160, 320, 370]);
    expect(planWaves(2, RolloutStrategy.parse({ waveSize: { count: 5 } }))).toEqual([2]);
    expect(planWaves(0, RolloutStrategy.parse({ waveSize: { count: 5 } }))).toEqual([]);
  });

  it("limits starts per minute", () => {
    expect(rateAllowance(null, 0, undefined).allowed).toBe(Number.MAX_SAFE_INTEGER);
    const a = rateAllowance(null, 1_000, 5);
    expect(a).toEqual({ allowed: 5, window: { startedAt: 1_000, count: 0 }, nextAt: null });
    expect(rateAllowance({ startedAt: 1_000, count: 5 }, 30_000, 5)).toEqual({ allowed: 0, window: { startedAt: 1_000, count: 5 }, nextAt: 61_000 });
    expect(rateAllowance({ startedAt: 1_000, count: 5 }, 61_000, 5).allowed).toBe(5);
  });

  it("judges a device on apply, heartbeats and call error rate", () => {
    expect(judgeDevice(sample(), 7, 0, 1_000, gate)).toEqual({ verdict: "healthy" });
    expect(judgeDevice(sample({ deploymentState: "applying" }), 7, 0, 1_000, gate).verdict).toBe("pending");
    expect(judgeDevice(sample({ deploymentState: "applying" }), 7, 0, 10_000, gate)).toEqual({ verdict: "failed", reasons: ["not applied within 10000 ms (state applying)"], gates: ["applied"] });
    expect(judgeDevice(sample({ deploymentState: "failed", deploymentReason: "boom" }), 7, 0, 1_000, gate)).toEqual({ verdict: "failed", reasons: ["apply failed: boom"], gates: ["applied"] });
    expect(judgeDevice(sample({ silentMs: 6_000 }), 7, 0, 1_000, gate)).toEqual({ verdict: "failed", reasons: ["no heartbeat for 6000 ms (max 5000)"], gates: ["heartbeats"] });
    expect(judgeDevice(sample({ calls: 4, failedCalls: 4 }), 7, 0, 1_000, gate).verdict).toBe("healthy"); // under minCalls
    expect(judgeDevice(sample({ calls: 5, failedCalls: 1 }), 7, 0, 1_000, gate).verdict).toBe("healthy"); // 0.2 is not over 0.2
    expect(judgeDevice(sample({ calls: 5, failedCalls: 2 }), 7, 0, 1_000, gate)).toEqual({ verdict: "failed", reasons: ["call error rate 0.400 (2 of 5) over 0.2"], gates: ["callErrorRate"] });
  });

  it("judges a device on crashes and restarts of its services on the new version, with a threshold", () => {
    expect(judgeDevice(sample({ services: 2 }), 7, 0, 1_000, gate)).toEqual({ verdict: "healthy" });
    // default threshold 0: one crash fails it, naming the service and the numbers
    expect(judgeDevice(sample({ services: 2, serviceCrashes: 1, crashedServices: ["sensor"] }), 7, 0, 1_000, gate)).toEqual({
      verdict: "failed", reasons: ["service crashes 1 (sensor) over 0"], gates: ["serviceCrashes"],
    });
    const lenient = RolloutGate.parse({ maxServiceCrashes: 3 });
    expect(judgeDevice(sample({ serviceCrashes: 3, crashedServices: ["a"] }), 7, 0, 1_000, lenient).verdict).toBe("healthy"); // 3 is not over 3
    expect(judgeDevice(sample({ serviceCrashes: 4, crashedServices: ["a", "b"] }), 7, 0, 1_000, lenient)).toEqual({ verdict: "failed", reasons: ["service crashes 4 (a, b) over 3"], gates: ["serviceCrashes"] });
    // still applying, but crashing already: failed, not pending
    expect(judgeDevice(sample({ deploymentState: "applying", serviceCrashes: 2 }), 7, 0, 1_000, gate)).toMatchObject({ verdict: "failed", gates: ["serviceCrashes"] });
    // several measures at once: each is named
    const both = judgeDevice(sample({ silentMs: 6_000, calls: 5, failedCalls: 5, serviceCrashes: 1 }), 7, 0, 1_000, gate);
    expect(both).toMatchObject({ verdict: "failed", gates: ["heartbeats", "callErrorRate", "serviceCrashes"] });
    expect(judgeDevice(sample({ generation: 9 }), 7, 0, 1_000, gate)).toMatchObject({ verdict: "failed", gates: ["superseded"] });
  });

  it("counts failed devices per tripped gate", () => {
    expect(trippedGates([])).toEqual({});
    expect(trippedGates([{ gates: ["serviceCrashes"] }, { gates: ["serviceCrashes", "heartbeats"] }, { gates: ["applied"] }])).toEqual({ serviceCrashes: 2, heartbeats: 1, applied: 1 });
  });

  it("rolls back only past the threshold", () => {
    expect(pastThreshold(0, 10, { failureThreshold: { count: 0 } })).toBe(false);
    expect(pastThreshold(1, 10, { failureThreshold: { count: 0 } })).toBe(true);
    expect(pastThreshold(2, 10, { failureThreshold: { percent: 20 } })).toBe(false);
    expect(pastThreshold(3, 10, { failureThreshold: { percent: 20 } })).toBe(true);
  });
});
