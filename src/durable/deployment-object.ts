/**
 * One object per deployment (named by namespace and id): which module is on
 * which device with which functions, and the generation that bumps on every
 * (re)deploy. Device objects hold the desired state the agents apply; this
 * object answers "where does a call go" and "what was deployed".
 */
import { SqlObject } from "./sql-object.js";
import { iso } from "../core/time.js";
import { registryStub } from "../platform/stubs.js";
import type { Env } from "../platform/env.js";
import { FAILOVER_TABLE, PlacementFailovers, type FailoverSpec } from "./deployment-failover.js";
import type { PlacementFailover } from "../protocol/deployment.js";

const SCHEMA = `
CREATE TABLE deployment (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  name       TEXT NOT NULL,
  namespace  TEXT NOT NULL,
  source     TEXT NOT NULL,
  signed_by  TEXT,
  generation INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE placements (
  device    TEXT NOT NULL,
  module    TEXT NOT NULL,
  digest    TEXT NOT NULL,
  functions TEXT NOT NULL,
  PRIMARY KEY (device, module)
);`;

export type Placement = { device: string; module: string; digest: string; functions: string[] };
export type DeploymentRecord = {
  id: string;
  namespace: string;
  source: "signed" | "wasmiot";
  signedBy: string | null;
  generation: number;
  createdAt: string;
  updatedAt: string;
  placements: Placement[];
  /** placements with a failover policy: home, current device, why it moved */
  failover: PlacementFailover[];
};

type Row = { name: string; namespace: string; source: "signed" | "wasmiot"; signed_by: string | null; generation: number; created_at: number; updated_at: number };
type PlacementRow = { device: string; module: string; digest: string; functions: string };

/**
 * The last generation handed out, kept when the deployment is removed: a redeploy after an
 * undeploy goes on counting, so every device's "newer generation wins" holds across both.
 */
const GENERATION_COUNTER = `
CREATE TABLE generation_counter (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL);
INSERT INTO generation_counter (id, generation) SELECT 1, COALESCE(MAX(generation), 0) FROM deployment;`;

export class DeploymentObject extends SqlObject<Env> {
  protected migrations() {
    return [SCHEMA, GENERATION_COUNTER, FAILOVER_TABLE];
  }

  /** Placements with a failover policy (deployment-failover.ts), looked at from the alarm. */
  private readonly failovers = new PlacementFailovers(this.sql, this.clock, this.env, {
    meta: () => {
      const row = this.hasSchema ? this.one<Row>("SELECT * FROM deployment") : undefined;
      return row ? { id: row.name, namespace: row.namespace, source: row.source } : null;
    },
    nextGeneration: () => this.nextGeneration(),
    movePlacement: (module, from, to, generation, update) => {
      this.ctx.storage.transactionSync(() => {
        this.run("UPDATE OR REPLACE placements SET device = ? WHERE device = ? AND module = ?", to, from, module);
        this.run("UPDATE deployment SET generation = ?, updated_at = ?", generation, this.clock.now());
        update();
      });
    },
    holders: (module) => this.all<{ device: string }>("SELECT device FROM placements WHERE module = ?", module).map((r) => r.device),
    modulesOn: (device) => this.all<{ module: string }>("SELECT module FROM placements WHERE device = ?", device).map((r) => r.module),
  });

  /** Looks at the placements with a failover policy that are due, then sleeps until the next is. */
  override async alarm() {
    if (!this.hasSchema) return;
    await this.failovers.run(this.clock.now());
    await this.armFailover();
  }

  private async armFailover() {
    const due = this.failovers.dueAt();
    if (due === null) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(Math.max(due, this.clock.now()));
  }

  /** The next generation: every put and every removal takes one, in this object's order. */
  private nextGeneration(): number {
    return this.one<{ generation: number }>("UPDATE generation_counter SET generation = generation + 1 RETURNING generation")!.generation;
  }

  /** Reading a deployment id that was never deployed stores nothing. */
  protected override schemaOnFirstWrite() {
    return true;
  }

  /** The caller's namespace (null: a key spanning all) must be this deployment's; the object is named by both, this checks it holds. */
  private visibleTo(namespace: string | null): Row | undefined {
    const row = this.hasSchema ? this.one<Row>("SELECT * FROM deployment") : undefined;
    return row && (namespace === null || row.namespace === namespace) ? row : undefined;
  }

  /**
   * Answers null (and changes nothing) when the deployment belongs to another namespace.
   * Replaces the placements on `scope` (every device, or one device for a
   * wasmiot facade deploy, which sends one manifest per device) and bumps the
   * generation. Answers the new generation and the devices that lost it.
   */
  async put(
    meta: { id: string; namespace: string; source: "signed" | "wasmiot"; signedBy: string | null },
    placements: Placement[],
    scope: { device: string } | "all",
    /** placements to re-place on a standby while their device is offline */
    failover: FailoverSpec[] = [],
  ): Promise<{ generation: number; dropped: string[] } | null> {
    this.ensureSchema();
    const now = this.clock.now();
    const current = this.one<Row>("SELECT * FROM deployment");
    if (current && current.namespace !== meta.namespace) return null;
    const generation = this.nextGeneration();
    const before = new Set(this.all<{ device: string }>("SELECT DISTINCT device FROM placements").map((r) => r.device));
    this.ctx.storage.transactionSync(() => {
      if (scope === "all") this.run("DELETE FROM placements");
      else this.run("DELETE FROM placements WHERE device = ?", scope.device);
      for (const p of placements) {
        this.run`INSERT INTO placements (device, module, digest, functions) VALUES (${p.device}, ${p.module}, ${p.digest}, ${JSON.stringify(p.functions)})`;
      }
      this.run`INSERT INTO deployment (id, name, namespace, source, signed_by, generation, created_at, updated_at) VALUES (1, ${meta.id}, ${meta.namespace}, ${meta.source}, ${meta.signedBy}, ${generation}, ${now}, ${now})
         ON CONFLICT (id) DO UPDATE SET source = excluded.source, signed_by = excluded.signed_by, generation = excluded.generation, updated_at = excluded.updated_at`;
      this.failovers.reset(failover, scope);
    });
    await this.armFailover();
    const after = new Set(this.all<{ device: string }>("SELECT DISTINCT device FROM placements").map((r) => r.device));
    await registryStub(this.env).upsertDeployment(meta.namespace, meta.id, meta.source, generation);
    return { generation, dropped: [...before].filter((d) => !after.has(d)) };
  }

  /**
   * Removes the deployment from `scope`; answers the devices it was on (empty: it was not
   * there, or belongs to another namespace) and the generation of the removal, which devices
   * compare with the part they hold.
   */
  async remove(namespace: string | null, scope: { device: string } | "all"): Promise<{ devices: string[]; generation: number }> {
    if (!this.visibleTo(namespace)) return { devices: [], generation: 0 };
    const devices = this.all<{ device: string }>(
      scope === "all" ? "SELECT DISTINCT device FROM placements" : "SELECT DISTINCT device FROM placements WHERE device = ?",
      ...(scope === "all" ? [] : [scope.device]),
    ).map((r) => r.device);
    // A home whose module is on a standby still holds its part: it goes too.
    for (const h of this.failovers.homesAway(scope)) if (!devices.includes(h)) devices.push(h);
    const row = this.one<Row>("SELECT * FROM deployment");
    if (devices.length === 0) return { devices, generation: 0 };
    let gone = false;
    let generation = 0;
    this.ctx.storage.transactionSync(() => {
      generation = this.nextGeneration();
      if (scope === "all") this.run("DELETE FROM placements");
      else this.run("DELETE FROM placements WHERE device = ?", scope.device);
      gone = !this.one("SELECT 1 AS x FROM placements LIMIT 1");
      if (gone) this.run("DELETE FROM deployment");
      this.failovers.clear(gone ? "all" : scope);
    });
    await this.armFailover();
    if (gone && row) await registryStub(this.env).dropDeployment(row.namespace, row.name, generation);
    return { devices, generation };
  }

  /**
   * A rollout's step on some devices: each listed device's placements are replaced, all
   * under one new generation, which is answered (null: another namespace's deployment).
   * Devices not listed keep theirs: during a rollout devices hold different versions.
   */
  async placeEach(
    meta: { id: string; namespace: string; source: "signed" | "wasmiot"; signedBy: string | null },
    entries: { device: string; placements: Placement[] }[],
  ): Promise<number | null> {
    this.ensureSchema();
    const now = this.clock.now();
    const current = this.one<Row>("SELECT * FROM deployment");
    if (current && current.namespace !== meta.namespace) return null;
    let generation = 0;
    this.ctx.storage.transactionSync(() => {
      generation = this.nextGeneration();
      for (const e of entries) {
        this.run("DELETE FROM placements WHERE device = ?", e.device);
        for (const p of e.placements) {
          this.run`INSERT INTO placements (device, module, digest, functions) VALUES (${p.device}, ${p.module}, ${p.digest}, ${JSON.stringify(p.functions)})`;
        }
      }
      this.run`INSERT INTO deployment (id, name, namespace, source, signed_by, generation, created_at, updated_at) VALUES (1, ${meta.id}, ${meta.namespace}, ${meta.source}, ${meta.signedBy}, ${generation}, ${now}, ${now})
         ON CONFLICT (id) DO UPDATE SET generation = excluded.generation, updated_at = excluded.updated_at`;
    });
    if (!current) await registryStub(this.env).upsertDeployment(meta.namespace, meta.id, meta.source, generation);
    return generation;
  }

  /** A rollback of devices that had no earlier version: their placements go, as of the answered generation. */
  async removeEach(namespace: string, devices: string[]): Promise<number> {
    if (!this.visibleTo(namespace)) return 0;
    let generation = 0;
    this.ctx.storage.transactionSync(() => {
      generation = this.nextGeneration();
      for (const d of devices) this.run("DELETE FROM placements WHERE device = ?", d);
      this.run("UPDATE deployment SET generation = ?, updated_at = ?", generation, this.clock.now());
    });
    return generation;
  }

  async record(namespace: string | null): Promise<DeploymentRecord | null> {
    const row = this.visibleTo(namespace);
    if (!row) return null;
    return {
      id: row.name,
      namespace: row.namespace,
      source: row.source,
      signedBy: row.signed_by,
      generation: row.generation,
      createdAt: iso(row.created_at)!,
      updatedAt: iso(row.updated_at)!,
      placements: this.all<PlacementRow>("SELECT * FROM placements ORDER BY module, device").map((p) => ({
        device: p.device, module: p.module, digest: p.digest, functions: JSON.parse(p.functions) as string[],
      })),
      failover: this.failovers.view(),
    };
  }
}

/** Registers this class as the one behind the DEPLOYMENTS binding (see src/platform/env.ts). */
declare module "../platform/env.js" {
  interface DurableObjectClasses {
    DEPLOYMENTS: DeploymentObject;
  }
}
