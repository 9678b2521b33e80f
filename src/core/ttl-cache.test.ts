import { describe, expect, it } from "vitest";
import { TtlCache } from "./ttl-cache.js";

describe("TtlCache", () => {
  it("answers from memory until the entry expires, then loads again", async () => {
    let now = 10_000;
    const cache = new TtlCache<string, number>(1_000, 100, () => now);
    let loads = 0;
    const load = async () => ++loads;
    expect(await cache.get("k", load)).toBe(1);
    expect(await cache.get("k", load)).toBe(1);
    now += 1_001;
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

describe("TtlCache bounds", () => {
  it("forgets the least recently used entry past its size", async () => {
    const cache = new TtlCache<string, string>(60_000, 2);
    await cache.get("a", async () => "a");
    await cache.get("b", async () => "b");
    await cache.get("a", async () => "a again"); // a is now the most recent
    await cache.get("c", async () => "c");
    expect(await cache.get("a", async () => "reloaded")).toBe("a");
    expect(await cache.get("b", async () => "reloaded")).toBe("reloaded");
  });
});
