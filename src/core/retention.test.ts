import { describe, expect, it } from "vitest";
import { retentionCutoffs, retentionDue, RETENTION_PAUSE_MS } from "./retention.js";

const r = { endedJobsSeconds: 3600, idempotencySeconds: 600 };

describe("retention timing", () => {
  it("cuts ended jobs and keys at their own ages", () => {
    expect(retentionCutoffs(10_000_000, r)).toEqual({ endedBefore: 10_000_000 - 3_600_000, keysBefore: 10_000_000 - 600_000 });
  });

  it("is due at the earliest expiry, never sooner than a pause from now, and not at all with nothing kept", () => {
    expect(retentionDue(0, r, 1_000, null)).toBe(3_601_000);
    expect(retentionDue(0, r, 1_000, 1_000)).toBe(601_000);
    expect(retentionDue(5_000_000, r, 1_000, null)).toBe(5_000_000 + RETENTION_PAUSE_MS); // a backlog: next run shortly
    expect(retentionDue(0, r, null, null)).toBeNull();
  });
});
