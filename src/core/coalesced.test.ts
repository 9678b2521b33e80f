import { describe, expect, it } from "vitest";
import { coalesced } from "./coalesced.js";

/** A step whose passes the test releases one by one. */
function gatedStep() {
  const releases: (() => void)[] = [];
  let passes = 0;
  const step = () => new Promise<void>((resolve) => releases.push(() => { passes++; resolve(); }));
  return { step, release: () => releases.shift()!(), pending: () => releases.length, passes: () => passes };
}

describe("coalesced", () => {
  it("runs one pass at a time; requests during a pass make exactly one more, and all settle after it", async () => {
    const g = gatedStep();
    const run = coalesced(g.step);
    let settled = 0;
    const first = run().then(() => settled++);
    const during = [run(), run(), run()].map((p) => p.then(() => settled++));
    expect(g.pending()).toBe(1); // never two passes at once
    g.release();
    await Promise.resolve();
    await Promise.resolve();
    expect(settled).toBe(0); // the requests made during the first pass wait for the second
    expect(g.pending()).toBe(1);
    g.release();
    await Promise.all([first, ...during]);
    expect({ passes: g.passes(), settled }).toEqual({ passes: 2, settled: 4 });
  });

  it("a request after the runs ended starts a new run, and a failing pass rejects its callers but does not wedge the next", async () => {
    let fail = true;
    let passes = 0;
    const run = coalesced(async () => {
      passes++;
      if (fail) throw new Error("unreachable control plane");
    });
    await expect(run()).rejects.toThrow("unreachable control plane");
    fail = false;
    await run();
    expect(passes).toBe(2);
  });
});
