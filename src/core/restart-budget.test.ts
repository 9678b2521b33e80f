import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { afterExit, backoffDelay, FRESH_BUDGET, rearmAt, type BudgetState } from "./restart-budget.js";
import { RestartPolicy } from "../protocol/service.js";

const policy = RestartPolicy.parse({ mode: "on-failure", maxRestarts: 3, windowMs: 60_000, initialDelayMs: 100, maxDelayMs: 350, resetAfterMs: 5_000, rearmAfterMs: 30_000 });
const crash = (at: number, startedAt: number | null = at - 10) => ({ at, startedAt, failed: true, what: "exited with code 1" });

/** Runs a crash loop: each run starts at its restart time and fails 10 ms later. */
function loop(p: RestartPolicy, n: number, start = 1_000) {
  let budget: BudgetState = FRESH_BUDGET;
  let t = start;
  const out = [];
  for (let i = 0; i < n; i++) {
    const d = afterExit(p, budget, crash(t + 10, t));
    out.push(d);
    budget = d.budget;
    if (d.action !== "restart") break;
    t = d.at;
  }
  return out;
}

describe("restart budget", () => {
  it("restarts with growing delays up to the cap, then CRASHED with the reason and a re-arm time", () => {
    const ds = loop(policy, 10);
    expect(ds.map((d) => d.action)).toEqual(["restart", "restart", "restart", "crashed"]);
    expect(ds.slice(0, 3).map((d) => (d.action === "restart" ? d.delayMs : 0))).toEqual([100, 200, 350]);
    const last = ds[3]!;
    expect(last.action === "crashed" && last.reason).toMatch(/restart budget spent \(3 of 3 restarts within 60s\)/);
    expect(last.action === "crashed" && last.rearmAt).toBe(last.budget.crashedAt! + 30_000);
    expect(rearmAt(policy, last.budget)).toBe(last.budget.crashedAt! + 30_000);
  });

  it("a run that stayed up resetAfterMs forgets earlier failures", () => {
    const ds = loop(policy, 2);
    const budget = ds[1]!.budget;
    expect(budget.restarts).toHaveLength(2);
    const d = afterExit(policy, budget, crash(100_000, 100_000 - 5_000));
    expect(d).toMatchObject({ action: "restart", delayMs: 100 });
    expect(d.budget.restarts).toHaveLength(1);
  });

  it("restarts older than the window no longer count", () => {
    const budget: BudgetState = { restarts: [0, 1, 2], streak: 1, crashedAt: null };
    expect(afterExit(policy, budget, crash(10_000)).action).toBe("crashed");
    expect(afterExit(policy, budget, crash(70_000)).action).toBe("restart");
  });

  it("a clean exit is EXITED unless the mode is always; never crashes on the first failure", () => {
    const clean = { at: 10, startedAt: 0, failed: false, what: "exited with code 0" };
    expect(afterExit(policy, FRESH_BUDGET, clean).action).toBe("exited");
    expect(afterExit({ ...policy, mode: "always" }, FRESH_BUDGET, clean).action).toBe("restart");
    const never = afterExit({ ...policy, mode: "never" }, FRESH_BUDGET, crash(10));
    expect(never).toMatchObject({ action: "crashed", rearmAt: null });
    expect(never.reason).toMatch(/policy is never/);
  });

  it("no re-arm when rearmAfterMs is null (only a user's reset)", () => {
    const p = { ...policy, rearmAfterMs: null };
    const last = loop(p, 10).at(-1)!;
    expect(last).toMatchObject({ action: "crashed", rearmAt: null });
    expect(rearmAt(p, last.budget)).toBeNull();
  });

  it("property: never more than maxRestarts restarts within any window, delays within [initial, max]", () => {
    fc.assert(
      fc.property(
        fc.record({ maxRestarts: fc.integer({ min: 0, max: 8 }), initialDelayMs: fc.integer({ min: 0, max: 1000 }), extra: fc.integer({ min: 0, max: 5000 }), windowMs: fc.integer({ min: 1, max: 20_000 }) }),
        fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 30 }),
        (r, gaps) => {
          const p = RestartPolicy.parse({ maxRestarts: r.maxRestarts, initialDelayMs: r.initialDelayMs, maxDelayMs: r.initialDelayMs + r.extra, windowMs: r.windowMs, resetAfterMs: 10_000_000 });
          let budget: BudgetState = FRESH_BUDGET;
          let t = 0;
          const restarts: number[] = [];
          for (const gap of gaps) {
            const d = afterExit(p, budget, crash(t + gap, t));
            budget = d.budget;
            if (d.action !== "restart") return d.action === "crashed";
            expect(d.delayMs).toBeGreaterThanOrEqual(Math.min(p.initialDelayMs, p.maxDelayMs));
            expect(d.delayMs).toBeLessThanOrEqual(p.maxDelayMs);
            restarts.push(d.at);
            expect(restarts.filter((x) => x > d.at - p.windowMs).length).toBeLessThanOrEqual(p.maxRestarts);
            t = d.at;
          }
          return true;
        },
      ),
    );
  });

  it("backoffDelay doubles and caps", () => {
    expect([1, 2, 3, 4, 60].map((n) => backoffDelay(policy, n))).toEqual([100, 200, 350, 350, 350]);
  });
});
