import { describe, expect, it } from "vitest";
import { explainMisses, leastLoaded, mismatches, select, type Candidate } from "./selector.js";
import { Selector } from "../protocol/selector.js";

function device(id: string, o: { labels?: Record<string, string>; cameras?: string[]; sensors?: string[]; arch?: string; interfaces?: string[]; status?: "online" | "offline"; drained?: boolean } = {}): Candidate {
  return {
    id,
    status: o.status ?? "online",
    drained: o.drained ?? false,
    description: {
      platform: { memory: { bytes: 1 }, cpu: { humanReadableName: "x", clockSpeed: { Hz: 1 }, ...(o.arch ? { arch: o.arch } : {}) } },
      supervisorInterfaces: o.interfaces ?? ["fd_write"],
      capabilities: { cameras: o.cameras ?? [], sensors: o.sensors ?? [], labels: o.labels ?? {} },
    },
  };
}
const sel = (s: unknown) => Selector.parse(s);

describe("selector", () => {
  it("matches labels by equality, In, NotIn, Exists and DoesNotExist", () => {
    const d = device("a", { labels: { site: "north", tier: "edge" } });
    expect(mismatches(sel({ labels: { site: "north" } }), d)).toEqual([]);
    expect(mismatches(sel({ labels: { site: "south" } }), d)).toEqual(["label site is north, not south"]);
    expect(mismatches(sel({ labels: { rack: "1" } }), d)).toEqual(["label rack is not set (wanted 1)"]);
    expect(mismatches(sel({ expressions: [{ key: "tier", operator: "In", values: ["edge", "core"] }] }), d)).toEqual([]);
    expect(mismatches(sel({ expressions: [{ key: "tier", operator: "NotIn", values: ["edge"] }] }), d)).toEqual(["label tier is edge, which is excluded"]);
    expect(mismatches(sel({ expressions: [{ key: "site", operator: "Exists" }] }), d)).toEqual([]);
    expect(mismatches(sel({ expressions: [{ key: "site", operator: "DoesNotExist" }] }), d)).toEqual(["label site is set (north)"]);
  });

  it("matches capabilities, interfaces, architecture and online, and gives every reason", () => {
    const d = device("b", { cameras: ["front"], sensors: [], arch: "arm64", interfaces: ["fd_write"], status: "offline" });
    expect(mismatches(sel({ capabilities: ["camera", "camera:front"], online: false }), d)).toEqual([]);
    expect(mismatches(sel({ capabilities: ["sensor:temperature", "camera:rear", "radar"], interfaces: ["fd_write", "sock_accept"], arch: ["x64"] }), d)).toEqual([
      "declares no sensor temperature",
      "declares no camera rear",
      "capability radar is unknown (use camera, sensor, camera:<name> or sensor:<name>)",
      "does not link sock_accept",
      "architecture arm64, not x64",
      "offline",
    ]);
    expect(mismatches(sel({ online: null }), d)).toEqual([]);
  });

  it("selects matches and explains misses, bounded", () => {
    const all = [device("a", { labels: { site: "n" } }), device("b"), device("c", { status: "offline", labels: { site: "n" } })];
    const { matches, misses } = select(sel({ labels: { site: "n" } }), all);
    expect(matches.map((m) => m.id)).toEqual(["a"]);
    expect(misses).toEqual([{ device: "b", reasons: ["label site is not set (wanted n)"] }, { device: "c", reasons: ["offline"] }]);
    expect(explainMisses(misses, 1)).toBe("b: label site is not set (wanted n); and 1 more");
  });

  it("least loaded skips drained and unknown-load devices, breaks ties by id", () => {
    const ds = [device("z"), device("y"), device("x", { drained: true })];
    const load: Record<string, number | null> = { z: 2, y: 2, x: 0 };
    expect(leastLoaded(ds, (c) => load[c.id]!)?.id).toBe("y");
    load.z = 1;
    expect(leastLoaded(ds, (c) => load[c.id]!)?.id).toBe("z");
    load.z = null;
    load.y = null;
    expect(leastLoaded(ds, (c) => load[c.id]!)).toBeNull();
  });
});
