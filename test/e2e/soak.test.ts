/**
 * A short slice of the fault suite (`npm run soak` runs the full one): 150 jobs while agents
 * are SIGKILLed, the control plane is crashed and restarted on its persisted state, and one
 * agent's link is blackholed. Nothing accepted may be lost or left unfinished.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runFaultSuite } from "../soak/faults.js";
import { summary } from "../soak/report.js";

describe("fault suite, short slice", () => {
  it("loses nothing and finishes everything through agent kills, a control-plane crash and a blackholed link", async () => {
    const lines: string[] = [];
    const report = await runFaultSuite({
      jobs: 150,
      submitSeconds: 18,
      kills: 3,
      killEveryMs: [3_000, 5_000],
      controlPlaneCrashes: 1,
      blackholeMs: 5_000,
      drainSeconds: 30,
      workDir: join(mkdtempSync(join(tmpdir(), "wv-soak-e2e-")), "faults"),
      log: (l) => lines.push(l),
    });
    const printed = summary(report);
    console.log(printed);
    expect(report.faults.agentKills, printed).toBeGreaterThanOrEqual(3);
    expect(report.faults.controlPlaneCrashes, printed).toBe(1);
    expect(report.submissions.notAccepted, printed).toBe(0);
    expect(report.accepted, printed).toBe(150);
    expect(report.lost, printed).toBe(0);
    expect(report.stuck, printed).toBe(0);
    // Every job that succeeded really ran on its device.
    expect(report.executionsPerJob["0"] ?? 0, printed).toBeLessThanOrEqual(Object.entries(report.failedForInfrastructure).reduce((n, [, c]) => n + c, 0));
  }, 120_000);
});
