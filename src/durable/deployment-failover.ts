/**
 * Failover of a deployment's placements (the deployment object's part; docs/fleet.md): a module
 * placed with `failover: {onOffline: "move", afterMs, devices | selector}` is re-placed on the next
 * healthy standby once its home device has sent no heartbeat for afterMs (the home's own object
 * measures the silence), and returns home when the home is back with its part active again. The
 * decision is pure (core/deployment-failover.ts); this part asks the device objects, keeps each
 * placement's home, current device and history, and says when the object's alarm must look again.
 *
 * No call runs twice: calls already queued or leased on the home stay there (they run, and their
 * result is accepted once, when it is back; a call's own job failover policy is the way to move one);
 * only new calls follow the placement. The home keeps its part while away, so it comes back ready.
 */
import type { Sql } from "./sql-object.js";
import type { Clock } from "../core/clock.js";
import type { Env } from "../platform/env.js";
import type { DeploymentFailover, DevicePart, FailoverMove, PlacementFailover } from "../protocol/deployment.js";
import { decide, lost, WATCH_MS, type DeviceNow, type FailoverDecision } from "../core/deployment-failover.js";
import { deviceStub } from "../platform/stubs.js";
import { placeBySelector } from "./fleet.js";
import { mapWithConcurrency } from "../core/concurrency.js";
import { iso } from "../core/time.js";

export const FAILOVER_TABLE = `
CREATE TABLE placement_failover (
  module     TEXT NOT NULL,
  home       TEXT NOT NULL,
  policy     TEXT NOT NULL,
  requires   TEXT NOT NULL,
  current    TEXT NOT NULL,
  moved_at   INTEGER,
  reason     TEXT,
  note       TEXT,
  next_check INTEGER,
  history    TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (module, home)
);`;

/** Moves kept per placement. */
const HISTORY = 20;

export type FailoverSpec = { module: string; home: string; policy: DeploymentFailover; requires: string[] };
type Row = { module: string; home: string; policy: string; requires: string; current: string; moved_at: number | null; reason: string | null; note: string | null; next_check: number | null; history: string };

/** What the part needs of its object: the deployment's identity, generations, and moving a placement between devices. */
export interface FailoverHost {
  meta(): { id: string; namespace: string; source: "signed" | "wasmiot" } | null;
  nextGeneration(): number;
  /** moves the placement of `module` from one device to another in the placements table (in one transaction with the row's update) */
  movePlacement(module: string, from: string, to: string, generation: number, update: () => void): void;
  /** devices `module` is placed on now */
  holders(module: string): string[];
  /** modules of this deployment placed on `device` now */
  modulesOn(device: string): string[];
}

export class PlacementFailovers {
  constructor(
    private readonly sql: Sql,
    private readonly clock: Clock,
    private readonly env: Env,
    private readonly host: FailoverHost,
  ) {}

  /** A (re)deploy: the policies are exactly these from now on, every placement at home. */
  reset(specs: FailoverSpec[], scope: { device: string } | "all") {
    if (scope === "all") this.sql.run("DELETE FROM placement_failover");
    else this.sql.run("DELETE FROM placement_failover WHERE home = ?", scope.device);
    const now = this.clock.now();
    for (const s of specs) {
      this.sql.run`INSERT OR REPLACE INTO placement_failover (module, home, policy, requires, current, next_check) VALUES (${s.module}, ${s.home}, ${JSON.stringify(s.policy)}, ${JSON.stringify(s.requires)}, ${s.home}, ${now})`;
    }
  }

  clear(scope: { device: string } | "all") {
    if (scope === "all") this.sql.run("DELETE FROM placement_failover");
    else this.sql.run("DELETE FROM placement_failover WHERE home = ? OR current = ?", scope.device, scope.device);
  }

  /** Homes whose placement is on a standby now (in `scope`). */
  homesAway(scope: { device: string } | "all"): string[] {
    const rows = this.sql.all<{ home: string; current: string }>("SELECT home, current FROM placement_failover WHERE current != home");
    return rows.filter((r) => scope === "all" || r.current === scope.device || r.home === scope.device).map((r) => r.home);
  }

  /** When the alarm must look next (null: no placement has a policy). */
  dueAt(): number | null {
    return this.sql.one<{ t: number | null }>("SELECT MIN(next_check) AS t FROM placement_failover")?.t ?? null;
  }

  private running: Promise<void> = Promise.resolve();

  /** From the alarm: looks at every placement that is due. One look at a time (a look awaits other objects). */
  run(now: number): Promise<void> {
    const next = this.running.then(() => this.runOnce(now));
    this.running = next.catch(() => undefined);
    return next;
  }

  private async runOnce(now: number) {
    const due = this.sql.all<Row>("SELECT * FROM placement_failover WHERE next_check <= ? ORDER BY next_check LIMIT 50", now);
    for (const r of due) {
      try {
        await this.check(r);
      } catch (e) {
        this.note(r, `could not look at the placement: ${String(e)}`.slice(0, 2000), this.clock.now() + WATCH_MS);
      }
    }
  }

  private async deviceNow(namespace: string, device: string, deployment: string | null): Promise<DeviceNow> {
    const stub = deviceStub(this.env, device);
    const v = await stub.view(namespace);
    if (!v.ok) return { id: device, exists: false, online: false, silentMs: null, drained: false, partState: null };
    const partState = deployment === null ? null : ((await stub.deploymentStatus(namespace, deployment))?.state ?? null);
    // Silent since its last heartbeat, or since its registration if none came (as a job's failover counts).
    const f = v.value.freshness;
    const silentMs = f ? (f.silentMs ?? Date.parse(f.asOf) - Date.parse(v.value.registeredAt)) : null;
    return { id: device, exists: true, online: v.value.status === "online", silentMs, drained: v.value.drained ?? false, partState };
  }

  /** The standbys in order of preference: the listed ones as given, or the selector's least-loaded healthy match. */
  private async standbys(namespace: string, policy: DeploymentFailover, requires: string[], skip: string[]): Promise<DeviceNow[]> {
    if (policy.devices) {
      const list = policy.devices.filter((d) => !skip.includes(d));
      return mapWithConcurrency(list, 8, (d) => this.deviceNow(namespace, d, null));
    }
    const placed = await placeBySelector(this.env, namespace, policy.selector!, requires, skip, policy.afterMs);
    if (!placed.ok) return placed.misses.slice(0, 5).map((m) => ({ id: m.device, exists: false, online: false, silentMs: null, drained: false, passedOver: m.reasons.join(", ") }));
    return [await this.deviceNow(namespace, placed.device, null)];
  }

  private async check(r: Row) {
    const meta = this.host.meta();
    if (!meta) return;
    const policy = JSON.parse(r.policy) as DeploymentFailover;
    const requires = JSON.parse(r.requires) as string[];
    const home = await this.deviceNow(meta.namespace, r.home, meta.id);
    const current = r.current === r.home ? home : await this.deviceNow(meta.namespace, r.current, null);
    // Standbys are asked only when a move may be needed (the home or the standby is lost).
    const needStandby = r.current === r.home ? lost(home, policy.afterMs) : lost(current, policy.afterMs);
    // A device that already holds the module (another home of it) is no standby for it.
    const standbys = needStandby ? await this.standbys(meta.namespace, policy, requires, [r.home, r.current, ...this.host.holders(r.module)]) : [];
    const decision = decide({ afterMs: policy.afterMs, home, current, standbys });
    await this.apply(r, decision);
  }

  private fresh(r: Row): Row | undefined {
    const now = this.sql.one<Row>("SELECT * FROM placement_failover WHERE module = ? AND home = ?", r.module, r.home);
    return now && now.current === r.current ? now : undefined;
  }

  private note(r: Row, note: string | null, nextCheck: number) {
    this.sql.run("UPDATE placement_failover SET note = ?, next_check = ? WHERE module = ? AND home = ? AND current = ?", note, nextCheck, r.module, r.home, r.current);
  }

  private async apply(r: Row, d: FailoverDecision) {
    const now = this.clock.now();
    if (d.kind === "stay" || d.kind === "no-standby") return this.note(r, d.note, now + d.checkInMs);
    const meta = this.host.meta()!;
    if (d.kind === "move") {
      // The standby gets its part first (the module, beside any of this deployment's modules it already has); calls follow only once it holds it.
      const module = await this.modulePart(meta.namespace, meta.id, r.home, r.module);
      if (!module) return this.note(r, `cannot move: the home ${r.home} no longer holds module ${r.module}`, now + WATCH_MS);
      const generation = this.host.nextGeneration();
      const held = await this.partOn(meta.namespace, meta.id, d.to);
      const out = await deviceStub(this.env, d.to).putDeployment(meta.namespace, { deployment: meta.id, generation, source: meta.source, modules: [...held.filter((m) => m.name !== r.module), module] });
      if (!out.ok) return this.note(r, `moving to ${d.to} failed: ${out.detail}`, now + WATCH_MS);
      if (!this.fresh(r)) {
        // Redeployed (or removed) meanwhile: the standby's copy goes again (unless it is where the placement is now).
        const latest = this.sql.one<Row>("SELECT * FROM placement_failover WHERE module = ? AND home = ?", r.module, r.home);
        if (latest?.current !== d.to) await this.dropFrom(meta, d.to, r.module);
        return;
      }
      this.commit(r, r.current, d.to, generation, { at: iso(now)!, from: r.current, to: d.to, kind: "failover", reason: d.reason });
      // The standby it leaves (a second failover) keeps no copy.
      if (r.current !== r.home) await this.dropFrom(meta, r.current, r.module);
      console.log(JSON.stringify({ level: "info", msg: "deployment failover", deployment: meta.id, module: r.module, from: r.current, to: d.to, reason: d.reason }));
      return;
    }
    // Return: calls go home at once (its part never left), then the standby's copy goes.
    const generation = this.host.nextGeneration();
    this.commit(r, r.current, r.home, generation, { at: iso(now)!, from: r.current, to: r.home, kind: "return", reason: d.reason });
    await this.dropFrom(meta, r.current, r.module);
    console.log(JSON.stringify({ level: "info", msg: "deployment placement returned home", deployment: meta.id, module: r.module, from: r.current, to: r.home }));
  }

  private commit(r: Row, from: string, to: string, generation: number, move: FailoverMove) {
    const now = this.clock.now();
    const history = [...(JSON.parse(r.history) as FailoverMove[]), move].slice(-HISTORY);
    this.host.movePlacement(r.module, from, to, generation, () => {
      this.sql.run`UPDATE placement_failover SET current = ${to}, moved_at = ${now}, reason = ${move.reason}, note = NULL, next_check = ${to === r.home ? now : now + WATCH_MS}, history = ${JSON.stringify(history)} WHERE module = ${r.module} AND home = ${r.home}`;
    });
  }

  /** Takes `module` off a standby: its part keeps the deployment's other modules placed there, or goes. */
  private async dropFrom(meta: { id: string; namespace: string; source: "signed" | "wasmiot" }, device: string, module: string) {
    const generation = this.host.nextGeneration();
    const stays = this.host.modulesOn(device).filter((m) => m !== module);
    const stub = deviceStub(this.env, device);
    if (stays.length === 0) {
      await stub.removeDeployment(meta.namespace, meta.id, generation);
      return;
    }
    const held = await this.partOn(meta.namespace, meta.id, device);
    await stub.putDeployment(meta.namespace, { deployment: meta.id, generation, source: meta.source, modules: held.filter((m) => stays.includes(m.name)) });
  }

  private async partOn(namespace: string, deployment: string, device: string): Promise<DevicePart["modules"]> {
    return (await deviceStub(this.env, device).deploymentPart(namespace, deployment))?.modules ?? [];
  }

  private async modulePart(namespace: string, deployment: string, home: string, module: string): Promise<DevicePart["modules"][number] | undefined> {
    return (await this.partOn(namespace, deployment, home)).find((m) => m.name === module);
  }

  view(): PlacementFailover[] {
    return this.sql.all<Row>("SELECT * FROM placement_failover ORDER BY module, home").map((r) => ({
      module: r.module,
      home: r.home,
      current: r.current,
      policy: JSON.parse(r.policy) as DeploymentFailover,
      movedAt: iso(r.moved_at),
      reason: r.reason,
      note: r.note,
      nextCheckAt: iso(r.next_check),
      history: JSON.parse(r.history) as FailoverMove[],
    }));
  }
}
