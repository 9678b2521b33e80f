import { describe, expect, it } from "vitest";
import { JobId, JobIdMinter } from "./ids.js";

describe("job ids", () => {
  const device = "dabcdefghijklmnop";
  const now = Date.UTC(2026, 10, 27, 12, 0, 0);

  // A batch of 1,000 jobs is minted in one millisecond; a device object holds hundreds of thousands.
  it("never repeat when minted in the same millisecond (200,000 at one instant)", () => {
    const minter = new JobIdMinter();
    const ids = new Set<string>();
    for (let i = 0; i < 200_000; i++) ids.add(minter.next(device, now));
    expect(200_000 - ids.size).toBe(0);
  });

  it("never repeat when the clock steps back, and keep the job id format", () => {
    const minter = new JobIdMinter();
    const ids = [minter.next(device, now), minter.next(device, now - 5_000), minter.next(device, now - 1), minter.next(device, now + 1)];
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(JobId.safeParse(id).success).toBe(true);
  });
});
