/**
 * Choosing devices by selector without asking every device object: candidates come from the
 * namespace's device listing shards (DeviceListObject, which holds each device's description,
 * status and a recent health), matched by the pure selector (core/selector.ts). For a single
 * placement (a job) only the few best-looking matches are asked for their live load.
 */
import { leastLoaded, mismatches, select, type Candidate } from "../core/selector.js";
import { listingShard } from "../core/device-listing.js";
import { mapWithConcurrency } from "../core/concurrency.js";
import type { DeviceDescription, Health } from "../protocol/device.js";
import type { Selector, SelectorMiss } from "../protocol/selector.js";
import type { Env } from "../platform/env.js";
import { settingsFrom } from "../platform/settings.js";
import { deviceListStub, deviceStub } from "../platform/stubs.js";

/** A namespace's listed devices this many at most are considered (a selector over more is refused by its caller's bounds). */
export const MAX_CANDIDATES = 20_000;
/** How many of the matches are asked for their live load when placing one job. */
const LOAD_PROBES = 8;
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
 * The least-loaded healthy device the selector picks: matched on the listing, then the
 * LOAD_PROBES least busy by listed health asked for their live state (online, drained,
 * queued + running). `exclude`: devices not to pick (a job moving away from one). `maxSilentMs`: only
 * a device heard from within this long (a failover's move: a device that fell silent together with the
 * one it leaves still reads online until the heartbeat timeout, and must not be picked).
 */
export async function placeBySelector(env: Env, namespace: string, selector: Selector, requires: readonly string[], exclude: readonly string[] = [], maxSilentMs?: number): Promise<Placement> {
  const s = withInterfaces(selector, requires);
  const all = (await fleetCandidates(env, namespace)).filter((d) => !exclude.includes(d.id));
  const { matches, misses } = select(s, all);
  const probed = [...matches].sort((a, b) => (a.health?.jobsRunning ?? 0) - (b.health?.jobsRunning ?? 0) || (a.id < b.id ? -1 : 1)).slice(0, LOAD_PROBES);
  const live = await mapWithConcurrency(probed, LOAD_PROBES, async (d) => {
    const v = await deviceStub(env, d.id).view(namespace);
    if (!v.ok) return { d, load: null, reasons: ["not registered any more"] };
    const now: Candidate = { id: d.id, status: v.value.status, description: v.value.description, drained: v.value.drained ?? false };
    const silent = v.value.freshness?.silentMs ?? null;
    const quiet = maxSilentMs !== undefined && (silent === null || silent >= maxSilentMs) ? [`silent ${silent === null ? "since registration" : `${silent} ms`} (a move wants a device heard from within ${maxSilentMs} ms)`] : [];
    const reasons = [...mismatches(s, now), ...(now.drained ? ["drained"] : []), ...quiet];
    const q = v.value.queue;
    return { d: { ...d, drained: now.drained, status: now.status }, load: reasons.length === 0 && q ? q.queued + q.running : null, reasons };
  });
  const best = leastLoaded(live.map((l) => l.d), (c) => live.find((l) => l.d.id === c.id)!.load);
  if (best) return { ok: true, device: best.id };
  return { ok: false, misses: [...live.filter((l) => l.reasons.length > 0).map((l) => ({ device: l.d.id, reasons: l.reasons })), ...misses] };
}
