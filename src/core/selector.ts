/**
 * Matching devices against a selector (src/protocol/selector.ts). Pure: the caller hands in
 * the candidates (from the sharded device listing, which holds each device's description and
 * status), this answers which match and, for each that does not, every reason why.
 */
import type { DeviceDescription, DeviceStatus, Health } from "../protocol/device.js";
import type { Selector, SelectorMiss } from "../protocol/selector.js";

export interface Candidate {
  id: string;
  status: DeviceStatus;
  description: DeviceDescription;
  drained?: boolean;
  health?: Pick<Health, "jobsRunning"> | null;
}

/** Every reason `c` does not fit `s` (empty: it fits). */
export function mismatches(s: Selector, c: Candidate): string[] {
  const why: string[] = [];
  const labels = c.description.capabilities?.labels ?? {};
  for (const [k, v] of Object.entries(s.labels ?? {})) {
    if (!(k in labels)) why.push(`label ${k} is not set (wanted ${v})`);
    else if (labels[k] !== v) why.push(`label ${k} is ${labels[k]}, not ${v}`);
  }
  for (const e of s.expressions ?? []) {
    const has = e.key in labels;
    const v = labels[e.key];
    switch (e.operator) {
      case "Exists":
        if (!has) why.push(`label ${e.key} is not set`);
        break;
      case "DoesNotExist":
        if (has) why.push(`label ${e.key} is set (${v})`);
        break;
      case "In":
        if (!has || !e.values.includes(v!)) why.push(`label ${e.key} is ${has ? v : "not set"}, not in [${e.values.join(", ")}]`);
        break;
      case "NotIn":
        if (has && e.values.includes(v!)) why.push(`label ${e.key} is ${v}, which is excluded`);
        break;
    }
  }
  const cameras = c.description.capabilities?.cameras ?? [];
  const sensors = c.description.capabilities?.sensors ?? [];
  for (const cap of s.capabilities ?? []) {
    const [kind, name] = cap.split(/:(.*)/s) as [string, string | undefined];
    const held = kind === "camera" ? cameras : kind === "sensor" ? sensors : null;
    if (held === null) why.push(`capability ${cap} is unknown (use camera, sensor, camera:<name> or sensor:<name>)`);
    else if (name ? !held.includes(name) : held.length === 0) why.push(`declares no ${name ? `${kind} ${name}` : kind}`);
  }
  const linked = new Set(c.description.supervisorInterfaces);
  const missing = (s.interfaces ?? []).filter((i) => !linked.has(i));
  if (missing.length > 0) why.push(`does not link ${missing.join(", ")}`);
  if (s.arch) {
    const arch = c.description.platform.cpu.arch;
    if (!arch || !s.arch.includes(arch)) why.push(`architecture ${arch ?? "not declared"}, not ${s.arch.join(" or ")}`);
  }
  if (s.online !== null && (c.status === "online") !== s.online) why.push(s.online ? "offline" : "online");
  return why;
}

export interface Selection<C extends Candidate> {
  matches: C[];
  /** the candidates that did not match, each with its reasons */
  misses: SelectorMiss[];
}

export function select<C extends Candidate>(s: Selector, candidates: readonly C[]): Selection<C> {
  const matches: C[] = [];
  const misses: SelectorMiss[] = [];
  for (const c of candidates) {
    const reasons = mismatches(s, c);
    if (reasons.length === 0) matches.push(c);
    else misses.push({ device: c.id, reasons });
  }
  return { matches, misses };
}

/**
 * The least-loaded healthy match: not drained, then the fewest jobs queued + running,
 * ties broken by id so the choice is stable. `load` is what each device's own object said.
 */
export function leastLoaded<C extends Candidate>(matches: readonly C[], load: (c: C) => number | null): C | null {
  let best: { c: C; load: number } | null = null;
  for (const c of matches) {
    if (c.drained) continue;
    const l = load(c);
    if (l === null) continue;
    if (!best || l < best.load || (l === best.load && c.id < best.c.id)) best = { c, load: l };
  }
  return best?.c ?? null;
}

/** A one-line summary of the misses, bounded: the first `max` devices with their reasons, then a count. */
export function explainMisses(misses: readonly SelectorMiss[], max: number): string {
  const shown = misses.slice(0, max).map((m) => `${m.device}: ${m.reasons.join("; ")}`);
  const more = misses.length > max ? `; and ${misses.length - max} more` : "";
  return shown.length === 0 ? "no devices are registered in this namespace" : shown.join(" | ") + more;
}
