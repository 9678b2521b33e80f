/**
 * Choosing devices by selector without asking every device object: candidates come from the
 * namespace's device listing shards (DeviceListObject, which holds each device's description,
 * status and a recent health), matched by the pure selector (core/selector.ts). For a single
 * placement (a job, a service) only the few best-looking matches are asked for their live load.
 */
import { leastLoaded, mismatches, select, type Candidate } from "../core/selector.js";
import { listingShard } from "../core/device-listing.js";
import { mapWithConcurrency } from "../core/concurrency.js";
import type { DeviceDescription, DeviceView, Health } from "../protocol/device.js";
import type { Selector, SelectorMiss } from "../protocol/selector.js";
import type { Env } from "../platform/env.js";
import { settingsFrom } from "../platform/settings.js";
import { deviceListStub, deviceStub } from "../platform/stubs.js";

/** A namespace's listed devices this many at most are considered (a selector over more is refused by its caller's bounds). */
export const MAX_CANDIDATES = 20_000;
/** How many of the matches are asked for their live load when placing one job (the listing's jobsRunning picks them). */
const LOAD_PROBES = 8;
/** The same for a service: the listing holds no service counts, so more are asked. */
const SERVICE_PROBES = 32;
const PAGE = 500;

export type FleetDevice = Candidate & { registeredAt: number };

/** Every listed device of the namespace (each shard paged through; rows left in an old shard are skipped). */
export async function fleetCandidates(env: Env, namespace: string): Promise<FleetDevice[]> {
  const shards = settingsFrom(env).deviceListShards;
  const perShard = await Promise.all(
    Array.from({ length: shards }, async (_, shard) => {
      const out: FleetDevice[] = [];
      let after: { registeredAt: number; id: string } | null = null;
      for (;;) {
        const rows = await deviceListStub(env, namespace, shard).page(after, null, PAGE);
        for (const r of rows) {
          if (listingShard(r.id, shards) !== shard) continue;
          out.push({
            id: r.id,
            status: r.status,
            description: JSON.parse(r.description) as DeviceDescription,
            health: r.health ? (JSON.parse(r.health) as Health) : null,
            registeredAt: r.registeredAt,
          });
        }
        if (rows.length < PAGE || out.length >= MAX_CANDIDATES) return out;
        const last = rows[rows.length - 1]!;
        after = { registeredAt: last.registeredAt, id: last.id };
      }
    }),
  );
  return perShard.flat().sort((a, b) => a.registeredAt - b.registeredAt || (a.id < b.id ? -1 : 1)).slice(0, MAX_CANDIDATES);
}

/** The selector, with the host functions a module needs added to what it asks for. */
export function withInterfaces(s: Selector, requires: readonly string[]): Selector {
  return requires.length === 0 ? s : { ...s, interfaces: [...new Set([...(s.interfaces ?? []), ...requires])] };
}

export type Placement = { ok: true; device: string } | { ok: false; misses: SelectorMiss[] };

/**
 * What "least loaded" means for one kind of placement: which matches to ask first (by what
 * the listing holds), how many, and each asked device's load from its live view, or why it
 * cannot take this placement.
 */
export interface LoadMeasure {
  probes: number;
  order: (d: FleetDevice) => number;
  load: (v: Pick<DeviceView, "queue" | "services">) => number | { reason: string };
}

/** Jobs: queued + running; the listing's jobsRunning says whom to ask. */
export const JOB_LOAD: LoadMeasure = {
  probes: LOAD_PROBES,
  order: (d) => d.health?.jobsRunning ?? 0,
  load: (v) => (v.queue ? v.queue.queued + v.queue.running : { reason: "its load is not known" }),
};

/**
 * Services: how many the device holds (the listing does not say, so more matches are asked);
 * a device that already has a service of this name cannot take it.
 */
export const serviceLoad = (name: string): LoadMeasure => ({
  probes: SERVICE_PROBES,
  order: () => 0,
  load: (v) => (v.services?.some((s) => s.name === name) ? { reason: `already has a service named ${name}` } : (v.services?.length ?? 0)),
});

/**
 * The least-loaded healthy device the selector picks: matched on the listing, then the
 * `measure.probes` first by `measure.order` asked for their live state (online, drained,
 * load). `exclude`: devices not to pick (a job moving away from one). `maxSilentMs`: only
 * a device heard from within this long (a failover's move: a device that fell silent together with the
 * one it leaves still reads online until the heartbeat timeout, and must not be picked).
 */
export async function placeBySelector(
  env: Env, namespace: string, selector: Selector, requires: readonly string[], exclude: readonly string[] = [], maxSilentMs?: number, measure: LoadMeasure = JOB_LOAD,
): Promise<Placement> {
  const s = withInterfaces(selector, requires);
  const all = (await fleetCandidates(env, namespace)).filter((d) => !exclude.includes(d.id));
  const { matches, misses } = select(s, all);
  const probed = [...matches].sort((a, b) => measure.order(a) - measure.order(b) || (a.id < b.id ? -1 : 1)).slice(0, measure.probes);
  const live = await mapWithConcurrency(probed, LOAD_PROBES, async (d) => {
    const v = await deviceStub(env, d.id).view(namespace);
    if (!v.ok) return { d, load: null, reasons: ["not registered any more"] };
    const now: Candidate = { id: d.id, status: v.value.status, description: v.value.description, drained: v.value.drained ?? false };
    const silent = v.value.freshness?.silentMs ?? null;
    const quiet = maxSilentMs !== undefined && (silent === null || silent >= maxSilentMs) ? [`silent ${silent === null ? "since registration" : `${silent} ms`} (a move wants a device heard from within ${maxSilentMs} ms)`] : [];
    const load = measure.load(v.value);
    const reasons = [...mismatches(s, now), ...(now.drained ? ["drained"] : []), ...quiet, ...(typeof load === "number" ? [] : [load.reason])];
    return { d: { ...d, drained: now.drained, status: now.status }, load: reasons.length === 0 && typeof load === "number" ? load : null, reasons };
  });
  const best = leastLoaded(live.map((l) => l.d), (c) => live.find((l) => l.d.id === c.id)!.load);
  if (best) return { ok: true, device: best.id };
  return { ok: false, misses: [...live.filter((l) => l.reasons.length > 0).map((l) => ({ device: l.d.id, reasons: l.reasons })), ...misses] };
}
