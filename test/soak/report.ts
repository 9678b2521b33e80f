/** Reading what the suite kept: the Worker's log lines of one request, percentiles, the printed summary. */
import { readFileSync } from "node:fs";
import type { FaultReport } from "./faults.js";

/** The Worker's log lines that name `requestId` (the request's line and any error logged for it). */
export function workerLogLines(logFile: string, requestId: string | null): string[] {
  if (!requestId) return [];
  return readFileSync(logFile, "utf8").split("\n").filter((l) => l.includes(requestId));
}

export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The fault suite's figures, one a line. */
export function summary(r: FaultReport): string {
  const s = r.submissions;
  return [
    `accepted:                     ${r.accepted} jobs (${s.single} single submissions, ${s.batch} batches; ${s.retried} retried with the same Idempotency-Key, ${s.batchesRetried} of them batches; ${s.notAccepted} never accepted)`,
    `lost:                         ${r.lost}${r.lostIds.length ? ` ${r.lostIds.slice(0, 10).join(", ")}` : ""}`,
    `not in a terminal state:      ${r.stuck}${r.stuckIds.length ? ` ${r.stuckIds.slice(0, 10).join(", ")}` : ""} (drain took ${r.drainSeconds} s)`,
    `end states:                   ${JSON.stringify(r.states)}`,
    `ended FAILED (infrastructure): ${JSON.stringify(r.failedForInfrastructure)}${r.notSucceeded.map((n) => `\n  ${n}`).join("")}`,
    `executions per job:           ${JSON.stringify(r.executionsPerJob)} (runs seen in the devices' side-effect files)`,
    `duplicates:                   ${r.duplicates.total}; where the agent survived: ${r.duplicates.whereAgentSurvived}; causes ${JSON.stringify(r.duplicates.explained)}${r.duplicates.unexplained.length ? `; UNEXPLAINED ${r.duplicates.unexplained.join(", ")}` : ""}`,
    `jobs no answer named:         ${r.unansweredJobs.count} (${r.unansweredJobs.executed} of them ran)`,
    `redeliveries:                 ${r.redeliveries}`,
    `submit to end:                p50 ${r.submitToEndMs.p50} ms, p99 ${r.submitToEndMs.p99} ms, max ${r.submitToEndMs.max} ms (accepted to end: p50 ${r.acceptedToEndMs.p50} ms, p99 ${r.acceptedToEndMs.p99} ms)`,
    `faults:                       ${r.faults.agentKills} agent SIGKILLs ${JSON.stringify(r.faults.killsPerAgent)}, ${r.faults.controlPlaneCrashes} control-plane crashes (down ${r.faults.controlPlaneDownMs.join(", ")} ms), blackhole ${r.faults.blackholeMs} ms, ${r.faults.proxyCuts} connections cut, ${r.faults.delayedMs} ms of +80 ms delay`,
    `agent starts that failed:     ${r.faults.failedAgentStarts.length}${r.faults.failedAgentStarts.map((f) => `\n  ${f}`).join("")}`,
    `client:                       ${r.client.networkFailures} attempts without an answer; ${r.client.serverErrors.length} 5xx answers${r.client.serverErrors.map((e) => `\n  ${e.status} ${e.path} request ${e.requestId}: ${e.workerLog.join(" | ").slice(0, 600)}`).join("")}`,
  ].join("\n");
}

