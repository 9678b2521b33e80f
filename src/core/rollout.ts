/**
 * The decisions of a staged rollout, pure: wave sizes, the per-minute rate, each device's
 * verdict at the health gate, and whether the failures cross the rollback threshold. The
 * RolloutObject (src/durable/rollout-object.ts) stores state and does the I/O around them.
 */
import type { DeviceHealthSample, RolloutGate, RolloutGateName, RolloutRollback, RolloutStrategy } from "../protocol/rollout.js";

/** Wave sizes covering `targets` devices: the first from waveSize, the next the same or grown by exponentialRate. */
export function planWaves(targets: number, s: RolloutStrategy): number[] {
  if (targets <= 0) return [];
  const first = s.waveSize.count !== undefined ? s.waveSize.count : Math.ceil((s.waveSize.percent! / 100) * targets);
  const sizes: number[] = [];
  let size = Math.max(1, Math.min(first, targets));
  let left = targets;
  while (left > 0) {
    const take = Math.min(size, left);
    sizes.push(take);
    left -= take;
    if (s.exponentialRate) size = Math.max(size + 1, Math.ceil(size * s.exponentialRate.incrementFactor));
  }
  return sizes;
}

/** A one-minute window of device starts (AWS IoT Jobs' maximumPerMinute). */
export interface RateWindow {
  startedAt: number;
  count: number;
}

/**
 * How many devices may start now, and the window after; when none may, `nextAt` is when
 * the window opens again.
 */
export function rateAllowance(w: RateWindow | null, now: number, maxPerMinute: number | undefined): { allowed: number; window: RateWindow; nextAt: number | null } {
  if (maxPerMinute === undefined) return { allowed: Number.MAX_SAFE_INTEGER, window: { startedAt: now, count: 0 }, nextAt: null };
  const window = !w || now - w.startedAt >= 60_000 ? { startedAt: now, count: 0 } : w;
  const allowed = Math.max(0, maxPerMinute - window.count);
  return { allowed, window, nextAt: allowed === 0 ? window.startedAt + 60_000 : null };
}

export type Verdict =
  | { verdict: "healthy" }
  | { verdict: "failed"; reasons: string[]; gates: RolloutGateName[] }
  | { verdict: "pending"; reasons: string[] };

/**
 * One updated device at the gate: it must have applied this generation (within
 * applyTimeoutMs of being sent it), be heard from within maxSilenceMs, keep the failed
 * share of its calls of the deployment at or under maxErrorRate (once minCalls ended),
 * and its services on the new version must not crash or restart more than maxServiceCrashes
 * times. A failed device names each measure it failed (`gates`) with its numbers (`reasons`).
 */
export function judgeDevice(sample: DeviceHealthSample, generation: number, sentAt: number, now: number, gate: RolloutGate): Verdict {
  const reasons: string[] = [];
  const gates: RolloutGateName[] = [];
  const fail = (g: RolloutGateName, why: string) => {
    reasons.push(why);
    if (!gates.includes(g)) gates.push(g);
  };
  if (sample.generation !== null && sample.generation > generation) return { verdict: "failed", reasons: [`holds generation ${sample.generation}, newer than this rollout's ${generation}: someone else deployed`], gates: ["superseded"] };
  if (sample.deploymentState === "failed") fail("applied", `apply failed: ${sample.deploymentReason ?? "no reason given"}`);
  const applied = sample.deploymentState === "active" && sample.generation === generation;
  if (!applied && sample.deploymentState !== "failed") {
    if (now - sentAt >= gate.applyTimeoutMs) fail("applied", `not applied within ${gate.applyTimeoutMs} ms (state ${sample.deploymentState ?? "none"})`);
  }
  if (sample.silentMs === null) fail("heartbeats", "never sent a heartbeat");
  else if (sample.silentMs > gate.maxSilenceMs) fail("heartbeats", `no heartbeat for ${sample.silentMs} ms (max ${gate.maxSilenceMs})`);
  if (sample.calls >= gate.minCalls) {
    const rate = sample.failedCalls / sample.calls;
    if (rate > gate.maxErrorRate) fail("callErrorRate", `call error rate ${rate.toFixed(3)} (${sample.failedCalls} of ${sample.calls}) over ${gate.maxErrorRate}`);
  }
  const crashes = sample.serviceCrashes ?? 0;
  if (crashes > gate.maxServiceCrashes) {
    const names = sample.crashedServices ?? [];
    fail("serviceCrashes", `service crashes ${crashes}${names.length ? ` (${names.join(", ")})` : ""} over ${gate.maxServiceCrashes}`);
  }
  if (reasons.length > 0) return { verdict: "failed", reasons, gates };
  if (!applied) return { verdict: "pending", reasons: [`applying (state ${sample.deploymentState ?? "none"})`] };
  return { verdict: "healthy" };
}

/** Which measures tripped: failed devices per gate measure (a device failing several counts under each). */
export function trippedGates(failed: readonly { gates: readonly RolloutGateName[] }[]): Partial<Record<RolloutGateName, number>> {
  const out: Partial<Record<RolloutGateName, number>> = {};
  for (const d of failed) for (const g of d.gates) out[g] = (out[g] ?? 0) + 1;
  return out;
}

/** Whether `failed` of `updated` devices is past the threshold (strictly more than it). */
export function pastThreshold(failed: number, updated: number, r: RolloutRollback): boolean {
  const t = r.failureThreshold;
  return t.count !== undefined ? failed > t.count : updated > 0 && (failed / updated) * 100 > t.percent!;
}

export const describeThreshold = (r: RolloutRollback) => (r.failureThreshold.count !== undefined ? `more than ${r.failureThreshold.count} failed devices` : `more than ${r.failureThreshold.percent}% of updated devices failed`);
