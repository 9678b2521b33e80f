/** The agent's backoff keeps the delays of the hand-written copies it replaced (0.5 s doubling to 30 s). */
import { describe, expect, it } from "vitest";
import { agentBackoffMs } from "./agent-backoff.js";

describe("agentBackoffMs", () => {
  it("doubles from 0.5 s up to 30 s at its upper bound", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 50].map((f) => agentBackoffMs(f, 1))).toEqual([500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });

  it("jitters down to half of that", () => {
    expect([1, 4, 9].map((f) => agentBackoffMs(f, 0))).toEqual([250, 2_000, 15_000]);
  });
});
