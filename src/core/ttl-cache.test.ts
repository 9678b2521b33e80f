import { afterEach, describe, expect, it, vi } from "vitest";
import { TtlCache } from "./ttl-cache.js";

afterEach(() => vi.useRealTimers());

describe("TtlCache", () => {
  it("answers from memory until the entry expires, then loads again", async () => {
    vi.useFakeTimers();
    const cache = new TtlCache<string, number>(1_000);
    let loads = 0;
    const load = async () => ++loads;
    expect(await cache.get("k", load)).toBe(1);
    expect(await cache.get("k", load)).toBe(1);
    vi.advanceTimersByTime(1_001);
    expect(await cache.get("k", load)).toBe(2);
    cache.delete("k");
    expect(await cache.get("k", load)).toBe(3);
  });

  it("does not keep values `keep` refuses (a failed key check is asked again)", async () => {
    const cache = new TtlCache<string, number | null>(1_000);
    let loads = 0;
    const load = async () => (++loads, null);
    await cache.get("k", load, (v) => v !== null);
    await cache.get("k", load, (v) => v !== null);
    expect(loads).toBe(2);
  });
});
