/**
 * Failover of a deployment's placement (docs/fleet.md, "Failover of deployments"). Pure: the
 * deployment object hands in what the home device's object and the standbys' objects said, this
 * answers whether the module stays, moves to a standby, or returns home, and when to look again.
 * Silence is the home's own object's measure (its clock), so no two clocks are compared.
 */
import type { DeploymentState } from "../protocol/deployment.js";

/** What a device's object said about it just now. */
export interface DeviceNow {
  id: string;
  /** registered (in the deployment's namespace) */
  exists: boolean;
  online: boolean;
  /** ms since its last heartbeat, or its registration if none came (null: unknown) */
  silentMs: number | null;
  drained: boolean;
  /** its part of this deployment: state, or null when it holds none */
  partState?: DeploymentState | null;
  /** why it is no candidate, when that was decided before (a selector's miss) */
  passedOver?: string;
}

export type FailoverDecision =
  | { kind: "stay"; checkInMs: number; note: string | null }
  | { kind: "move"; to: string; reason: string }
  | { kind: "return"; reason: string }
  | { kind: "no-standby"; checkInMs: number; note: string };

/** While failed over, the home (and the standby) are looked at this often. */
export const WATCH_MS = 5_000;

/** Silent past the policy's time: lost (as is a device that is not registered, or whose silence is unknown). */
export function lost(d: DeviceNow, afterMs: number): boolean {
  return !d.exists || d.silentMs === null || d.silentMs >= afterMs;
}

/** Fit to take calls: registered, online, heard from within the policy's time, not drained. */
export function healthy(d: DeviceNow, afterMs: number): boolean {
  return d.exists && d.online && !d.drained && !lost(d, afterMs);
}

function whyNot(d: DeviceNow, afterMs: number): string {
  if (d.passedOver) return `${d.id}: ${d.passedOver}`;
  if (!d.exists) return `${d.id}: not registered`;
  if (d.drained) return `${d.id}: drained`;
  if (!d.online || lost(d, afterMs)) return `${d.id}: offline${d.silentMs === null ? "" : ` (silent ${d.silentMs} ms)`}`;
  return `${d.id}: fit`;
}

/**
 * One look at a placement. `home`: the device the manifest names; `current`: where calls go now
 * (the home, or a standby); `standbys`: the candidates in order of preference, each as its object
 * just said (the caller leaves out the home and the current device).
 */
export function decide(p: { afterMs: number; home: DeviceNow; current: DeviceNow; standbys: DeviceNow[] }): FailoverDecision {
  const { afterMs, home, current } = p;
  const next = p.standbys.find((s) => healthy(s, afterMs));
  const standbyNotes = () => (p.standbys.length === 0 ? "no standby device matches" : p.standbys.map((s) => whyNot(s, afterMs)).join("; "));
  if (current.id === home.id) {
    if (!lost(home, afterMs)) return { kind: "stay", checkInMs: afterMs - home.silentMs!, note: null };
    const silence = home.silentMs === null ? "has never sent a heartbeat" : `sent no heartbeat for ${home.silentMs} ms`;
    if (!next) return { kind: "no-standby", checkInMs: WATCH_MS, note: `home ${home.id} ${silence}, and no standby is healthy: ${standbyNotes()}`.slice(0, 2000) };
    return { kind: "move", to: next.id, reason: `home ${home.id} ${silence} (failover after ${afterMs} ms)` };
  }
  // Failed over: home again once it is back (heard from, online) and has its part applied (reconciled).
  if (healthy(home, afterMs) && home.partState === "active") {
    return { kind: "return", reason: `home ${home.id} is back: online, heard from ${home.silentMs} ms ago, its part active` };
  }
  const waiting = `waiting for home ${home.id}: ${healthy(home, afterMs) ? `its part is ${home.partState ?? "not held"}` : whyNot(home, afterMs).slice(home.id.length + 2)}`;
  if (!lost(current, afterMs)) return { kind: "stay", checkInMs: WATCH_MS, note: waiting };
  // The standby fell silent too: the next healthy one takes over.
  if (!next) return { kind: "no-standby", checkInMs: WATCH_MS, note: `${waiting}; standby ${current.id} is silent too, and no other standby is healthy: ${standbyNotes()}`.slice(0, 2000) };
  return { kind: "move", to: next.id, reason: `standby ${current.id} ${current.silentMs === null ? "was never heard from" : `sent no heartbeat for ${current.silentMs} ms`} (failover after ${afterMs} ms) while home ${home.id} is away` };
}
