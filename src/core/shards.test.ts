import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { mergePages, shardOf } from "./shards.js";

describe("shards", () => {
  it("places a key in the same shard every time, within range, and spreads device ids", () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) {
      const s = shardOf(`d${i.toString(32).padStart(16, "a")}`, 4);
      expect(s).toBe(shardOf(`d${i.toString(32).padStart(16, "a")}`, 4));
      counts[s]!++;
    }
    for (const c of counts) expect(c).toBeGreaterThan(700);
    expect(shardOf("anything", 1)).toBe(0);
  });

  it("merges sorted pages into the first `limit` rows of their union, and pages through all of it", () => {
    fc.assert(
      // Rows are unique across shards (a job lives in one), as (created_at, id) is.
      fc.property(fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 500 }), fc.integer({ min: 0, max: 4 })), { selector: ([v]) => v }), fc.integer({ min: 1, max: 7 }), (placed, limit) => {
        const sorted = [0, 1, 2, 3, 4].map((shard) => placed.filter(([, s]) => s === shard).map(([v]) => v).sort((a, b) => a - b));
        const union = sorted.flat().sort((a, b) => a - b);
        const seen: number[] = [];
        let after = -1;
        for (;;) {
          const pages = sorted.map((s) => s.filter((v) => v > after).slice(0, limit + 1));
          const { rows, more } = mergePages(pages, (a, b) => a - b, limit);
          seen.push(...rows);
          if (!more) break;
          after = rows[rows.length - 1]!;
        }
        expect(seen).toEqual(union);
      }),
    );
  });
});
