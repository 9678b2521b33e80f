/**
 * A device's desired state: the deployment parts it must hold, and what its
 * agent last said about each (applying, active, failed with a reason). Every
 * change bumps `version`, which the agent compares with what it applied.
 */
import type { Sql } from "./sql-object.js";
import type { Clock } from "../core/clock.js";
import type { AppliedReport, DeploymentState, DevicePart, DeviceDeploymentStatus, FunctionSpec } from "../protocol/deployment.js";
import { iso } from "../core/time.js";

export const DEPLOYMENT_TABLES = `
CREATE TABLE deployments (
  id         TEXT PRIMARY KEY,
  generation INTEGER NOT NULL,
  part       TEXT NOT NULL,
  state      TEXT NOT NULL,
  reason     TEXT,
  updated_at INTEGER NOT NULL
);
CREATE TABLE deployment_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT INTO deployment_version (id, version) VALUES (1, 0);`;

/**
 * The newest generation of each deployment this device has been told about, placed or
 * removed. Generations only move forward: a part or an undeploy decided at an older
 * generation (a redeploy that lost a race, a late retry) is refused, never applied.
 */
export const DEPLOYMENT_FLOORS_TABLE = `
CREATE TABLE deployment_floors (id TEXT PRIMARY KEY, generation INTEGER NOT NULL);
INSERT INTO deployment_floors (id, generation) SELECT id, generation FROM deployments;`;

type Row = { id: string; generation: number; part: string; state: DeploymentState; reason: string | null; updated_at: number; applied_generation: number | null };
type VersionRow = { version: number; reconciled_at: number | null; reconcile_note: string | null; fetched_version: number | null; fetched_at: number | null };

export type FunctionRef = { part: DevicePart; digest: string; spec: FunctionSpec };

export class DeviceDeployments {
  constructor(
    private readonly sql: Sql,
    private readonly clock: Clock,
    /** a part's state may have changed (its event waits in the outbox: device-events.ts) */
    private readonly changed: () => void = () => {},
  ) {}

  get version(): number {
    return this.sql.one<{ version: number }>("SELECT version FROM deployment_version")!.version;
  }

  private bump() {
    this.sql.run("UPDATE deployment_version SET version = version + 1");
  }

  /** The newest generation seen for a deployment (0: never). */
  private floor(id: string): number {
    return this.sql.one<{ generation: number }>("SELECT generation FROM deployment_floors WHERE id = ?", id)?.generation ?? 0;
  }

  private raiseFloor(id: string, generation: number) {
    this.sql.run(
      `INSERT INTO deployment_floors (id, generation) VALUES (?, ?)
       ON CONFLICT (id) DO UPDATE SET generation = MAX(generation, excluded.generation)`,
      id, generation,
    );
  }

  /**
   * Compare and set: takes the part if its generation is newer than any seen, or is the
   * one held (a retry). Answers false, changing nothing, for an older generation or one
   * already undeployed.
   */
  put(part: DevicePart): boolean {
    const floor = this.floor(part.deployment);
    const held = this.sql.one<{ generation: number }>("SELECT generation FROM deployments WHERE id = ?", part.deployment)?.generation;
    if (part.generation < floor || (part.generation === floor && held !== floor)) return false;
    this.raiseFloor(part.deployment, part.generation);
    this.sql.run`INSERT INTO deployments (id, generation, part, state, reason, updated_at) VALUES (${part.deployment}, ${part.generation}, ${JSON.stringify(part)}, 'pending', NULL, ${this.clock.now()})
       ON CONFLICT (id) DO UPDATE SET generation = excluded.generation, part = excluded.part, state = 'pending', reason = NULL, updated_at = excluded.updated_at`;
    this.bump();
    this.changed();
    return true;
  }

  /**
   * Undeploys as of `generation`: "stale" if the device holds a newer generation, "absent"
   * if there was nothing to remove. Either way no part older than `generation` is taken later.
   */
  remove(id: string, generation: number): "removed" | "absent" | "stale" {
    const held = this.sql.one<{ generation: number }>("SELECT generation FROM deployments WHERE id = ?", id)?.generation;
    if (held !== undefined && held > generation) return "stale";
    this.raiseFloor(id, generation);
    if (held === undefined) return "absent";
    this.sql.run("DELETE FROM deployments WHERE id = ?", id);
    this.bump();
    return "removed";
  }

  status(id: string, device: string): DeviceDeploymentStatus | null {
    const row = this.sql.one<Row>("SELECT * FROM deployments WHERE id = ?", id);
    return row ? { device, generation: row.generation, state: row.state, reason: row.reason, updatedAt: iso(row.updated_at)! } : null;
  }

  /** What the agent must hold; parts it has not reported on yet become `applying`. */
  desired(): { version: number; deployments: DevicePart[] } {
    if (this.sql.run("UPDATE deployments SET state = 'applying', updated_at = ? WHERE state = 'pending'", this.clock.now()) > 0) this.changed();
    this.sql.run("UPDATE deployment_version SET fetched_version = version, fetched_at = ?", this.clock.now());
    return { version: this.version, deployments: this.sql.all<Row>("SELECT * FROM deployments ORDER BY id").map((r) => JSON.parse(r.part) as DevicePart) };
  }

  /** The agent's word on each part; a report on an older generation changes nothing. */
  report(states: AppliedReport["states"]): number {
    let n = 0;
    const now = this.clock.now();
    for (const s of states) {
      n += this.sql.run`UPDATE deployments SET state = ${s.state}, reason = ${s.reason}, updated_at = ${now},
        applied_generation = CASE WHEN ${s.state} = 'active' THEN ${s.generation} ELSE applied_generation END
        WHERE id = ${s.deployment} AND generation = ${s.generation}`;
    }
    if (n > 0) this.changed();
    const note = states.map((s) => `${s.deployment} g${s.generation} ${s.state}${s.reason ? `: ${s.reason}` : ""}`).join("; ").slice(0, 2000);
    this.sql.run("UPDATE deployment_version SET reconciled_at = ?, reconcile_note = ?", now, note);
    return n;
  }

  /** Desired against actual, and every difference in words (GET /v1/devices/:id). */
  reconcileView() {
    const v = this.sql.one<VersionRow>("SELECT * FROM deployment_version")!;
    const deployments = this.sql.all<Row>("SELECT id, generation, state, reason, updated_at, applied_generation FROM deployments ORDER BY id").map((r) => ({
      deployment: r.id, desiredGeneration: r.generation, appliedGeneration: r.applied_generation, state: r.state, reason: r.reason, updatedAt: iso(r.updated_at)!,
    }));
    const drift: string[] = [];
    if (v.fetched_version === null) drift.push(deployments.length > 0 ? `the agent has not fetched its desired state (version ${v.version})` : "");
    else if (v.fetched_version < v.version) drift.push(`the agent last fetched desired state version ${v.fetched_version}; it is at ${v.version}`);
    for (const d of deployments) {
      if (d.state === "active") continue;
      const running = d.appliedGeneration === null ? "nothing applied" : `generation ${d.appliedGeneration} applied`;
      drift.push(`${d.deployment}: generation ${d.desiredGeneration} is ${d.state}${d.reason ? ` (${d.reason})` : ""}; ${running}`);
    }
    const real = drift.filter(Boolean);
    return {
      desiredVersion: v.version, fetchedVersion: v.fetched_version, fetchedAt: iso(v.fetched_at),
      lastReconcileAt: iso(v.reconciled_at), lastReconcileReason: v.reconcile_note,
      deployments, drift: real, inSync: real.length === 0,
    };
  }

  /** The part this device holds of a deployment (null: none). */
  part(id: string): DevicePart | null {
    const row = this.sql.one<Row>("SELECT part FROM deployments WHERE id = ?", id);
    return row ? (JSON.parse(row.part) as DevicePart) : null;
  }

  /**
   * The rollout committed: the generation kept beside `generation` may go. The part changes
   * in place (same generation, state untouched) and the version bumps, so the agent prunes.
   */
  releaseKept(id: string, generation: number): boolean {
    const part = this.part(id);
    if (!part || part.generation !== generation || part.keep === undefined) return false;
    delete part.keep;
    this.sql.run("UPDATE deployments SET part = ? WHERE id = ? AND generation = ?", JSON.stringify(part), id, generation);
    this.bump();
    return true;
  }

  /** Calls of a deployment created since `since` that ended: how many, and how many failed (FAILED, TIMED_OUT, REJECTED). */
  callOutcomes(id: string, since: number): { calls: number; failed: number } {
    const r = this.sql.one<{ calls: number; failed: number }>(
      `SELECT COUNT(*) AS calls, COALESCE(SUM(state IN ('FAILED', 'TIMED_OUT', 'REJECTED')), 0) AS failed FROM jobs
       WHERE deployment = ? AND created_at >= ? AND state IN ('SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED')`,
      id, since,
    );
    return r ?? { calls: 0, failed: 0 };
  }

  /** A described function of a deployment on this device, or why there is none (wasmiot's wording). */
  lookup(deployment: string, module: string, fn: string): { ok: true; ref: FunctionRef } | { ok: false; detail: string } {
    const row = this.sql.one<Row>("SELECT part FROM deployments WHERE id = ?", deployment);
    if (!row) return { ok: false, detail: "deployment does not exist" }; // wasmiot's words
    const part = JSON.parse(row.part) as DevicePart;
    const mod = part.modules.find((m) => m.name === module);
    if (!mod) return { ok: false, detail: `module ${module} not found for this deployment` };
    const spec = mod.functions[fn];
    if (!spec) return { ok: false, detail: `function ${fn} of module ${module} is not described in this deployment` };
    return { ok: true, ref: { part, digest: mod.digest, spec } };
  }

  /** Whether a data file (by digest) belongs to a deployment on this device: the agent may fetch only those. */
  holdsDataFile(deployment: string, digest: string): boolean {
    const row = this.sql.one<Row>("SELECT part FROM deployments WHERE id = ?", deployment);
    if (!row) return false;
    return (JSON.parse(row.part) as DevicePart).modules.some((m) => m.mounts.some((f) => f.digest === digest));
  }
}
