import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { decodeListingCursor, encodeListingCursor, listingShard, mergeShardPages, type DeviceSummary } from "./device-listing.js";

const summary = (id: string, registeredAt: number): DeviceSummary => ({
  id, namespace: "ns", name: null, status: "online", description: "{}", health: null, healthAt: null, lastSeen: null, registeredAt,
});

describe("the sharded device listing", () => {
  it("pages through shards in (registeredAt, id) order, each row once, whatever the page size", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z0-9]{6}$/), fc.integer({ min: 0, max: 20 })), { selector: ([id]) => id, maxLength: 60 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 7 }),
        (devices, shards, limit) => {
          const rows = devices.map(([id, t]) => summary(id, t));
          const shardRows = Array.from({ length: shards }, (_, s) => rows.filter((r) => listingShard(r.id, shards) === s));
          const seen: string[] = [];
          let after: { registeredAt: number; id: string } | null = null;
          for (let guard = 0; guard < 100; guard++) {
            // Each shard answers its first limit + 1 rows past the cursor, as the shard objects do.
            const pages = shardRows.map((rs) =>
              rs.filter((r) => !after || r.registeredAt > after.registeredAt || (r.registeredAt === after.registeredAt && r.id > after.id))
                .sort((a, b) => a.registeredAt - b.registeredAt || (a.id < b.id ? -1 : 1))
                .slice(0, limit + 1),
            );
            const page = mergeShardPages(pages, limit);
            seen.push(...page.rows.map((r) => r.id));
            if (!page.more) break;
            const last = page.rows.at(-1)!;
            after = { registeredAt: last.registeredAt, id: last.id };
          }
          const expected = [...rows].sort((a, b) => a.registeredAt - b.registeredAt || (a.id < b.id ? -1 : 1)).map((r) => r.id);
          expect(seen).toEqual(expected);
        },
      ),
    );
  });

  it("spreads ids over every shard", () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 400; i++) counts[listingShard(`d${i.toString(36)}xyz`, 4)]!++;
    for (const n of counts) expect(n).toBeGreaterThan(60);
  });

  it("reads back its own cursors and refuses others", () => {
    const p = { namespace: "team-a", registeredAt: 1764200000000, id: "dabc" };
    expect(decodeListingCursor(encodeListingCursor(p))).toEqual(p);
    for (const bad of ["", "bm9wZQ", "!!!", btoa(JSON.stringify(["a", 1.5, "x"])), btoa(JSON.stringify({ a: 1 }))]) expect(decodeListingCursor(bad)).toBeNull();
  });
});
