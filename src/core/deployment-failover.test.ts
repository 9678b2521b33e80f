/** Deployment failover decisions: when a placement moves, to which standby, and when it returns home. */
import { describe, expect, it } from "vitest";
import { decide, type DeviceNow } from "./deployment-failover.js";

const dev = (id: string, silentMs: number | null, more: Partial<DeviceNow> = {}): DeviceNow => ({ id, exists: true, online: silentMs !== null && silentMs < 30_000, silentMs, drained: false, partState: "active", ...more });
const AFTER = 15_000;

describe("deployment failover", () => {
  it("stays home while the home is heard from, and looks again when its silence would reach afterMs", () => {
    expect(decide({ afterMs: AFTER, home: dev("h", 4_000), current: dev("h", 4_000), standbys: [dev("s1", 1)] })).toEqual({ kind: "stay", checkInMs: 11_000, note: null });
  });

  it("moves to the first healthy standby of the ordered list once the home is silent for afterMs", () => {
    const home = dev("h", 15_000);
    const standbys = [dev("s1", 20_000, { online: true }), dev("s2", 100, { drained: true }), dev("s3", 200), dev("s4", 10)];
    expect(decide({ afterMs: AFTER, home, current: home, standbys })).toEqual({ kind: "move", to: "s3", reason: "home h sent no heartbeat for 15000 ms (failover after 15000 ms)" });
    expect(decide({ afterMs: AFTER, home: dev("h", 14_999), current: dev("h", 14_999), standbys }).kind).toBe("stay");
  });

  it("says why no standby can take it, and looks again", () => {
    const home = dev("h", 60_000);
    const out = decide({ afterMs: AFTER, home, current: home, standbys: [dev("s1", null), dev("s2", 5, { exists: false })] });
    expect(out).toEqual({ kind: "no-standby", checkInMs: 5_000, note: "home h sent no heartbeat for 60000 ms, and no standby is healthy: s1: offline; s2: not registered" });
    const bySelector = decide({ afterMs: AFTER, home, current: home, standbys: [dev("s3", null, { exists: false, passedOver: "label role is not set (wanted spare)" })] });
    expect(bySelector).toMatchObject({ kind: "no-standby", note: "home h sent no heartbeat for 60000 ms, and no standby is healthy: s3: label role is not set (wanted spare)" });
  });

  it("returns home only when the home is back and its part is active again", () => {
    const standby = dev("s1", 100);
    expect(decide({ afterMs: AFTER, home: dev("h", 60_000), current: standby, standbys: [] })).toMatchObject({ kind: "stay", note: "waiting for home h: offline (silent 60000 ms)" });
    expect(decide({ afterMs: AFTER, home: dev("h", 10, { partState: "applying" }), current: standby, standbys: [] })).toMatchObject({ kind: "stay", note: "waiting for home h: its part is applying" });
    expect(decide({ afterMs: AFTER, home: dev("h", 10), current: standby, standbys: [] })).toEqual({ kind: "return", reason: "home h is back: online, heard from 10 ms ago, its part active" });
  });

  it("moves on from a standby that falls silent too while the home is away", () => {
    const out = decide({ afterMs: AFTER, home: dev("h", 90_000), current: dev("s1", 20_000), standbys: [dev("s2", 50)] });
    expect(out).toEqual({ kind: "move", to: "s2", reason: "standby s1 sent no heartbeat for 20000 ms (failover after 15000 ms) while home h is away" });
  });
});
