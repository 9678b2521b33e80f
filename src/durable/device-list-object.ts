/**
 * One shard of the device listing (see src/core/device-listing.ts): a summary row per
 * device of one namespace whose id hashes here. Device objects publish only what changed
 * (status, name, description; health rarely), each publish carrying the device's next
 * revision, so publishes that arrive out of order never move a row backwards.
 */
import { SqlObject } from "./sql-object.js";
import type { DeviceSummary, ListingPosition } from "../core/device-listing.js";
import type { DeviceStatus } from "../protocol/device.js";
import type { Env } from "../platform/env.js";

const SCHEMA = `
CREATE TABLE devices (
  id            TEXT PRIMARY KEY,
  namespace     TEXT NOT NULL,
  name          TEXT,
  status        TEXT NOT NULL,
  description   TEXT NOT NULL,
  health        TEXT,
  health_at     INTEGER,
  last_seen     INTEGER,
  registered_at INTEGER NOT NULL,
  revision      INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL
);
CREATE INDEX devices_by_position ON devices (registered_at, id);`;

/** Devices of this shard by status and agent version, kept as publishes apply (GET /metrics reads it). */
const METRICS = `
CREATE TABLE metric_devices (status TEXT NOT NULL, version TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (status, version));
INSERT INTO metric_devices SELECT status, COALESCE(json_extract(description, '$.agent.version'), 'unknown'), COUNT(*) FROM devices GROUP BY 1, 2;`;

/**
 * Services by status and deployment parts by state of this shard's devices: each device's last
 * tally (device-tallies.ts) and the totals they add up to, kept as tallies apply.
 */
const TALLIES = `
CREATE TABLE device_tallies (id TEXT PRIMARY KEY, revision INTEGER NOT NULL, tally TEXT NOT NULL);
CREATE TABLE metric_parts (kind TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (kind, state));`;

type TallyRow = { kind: string; state: string; n: number };

/** The agent version a description names ("unknown" for none). */
function agentVersion(description: string): string {
  try {
    const v = (JSON.parse(description) as { agent?: { version?: unknown } }).agent?.version;
    return typeof v === "string" ? v : "unknown";
  } catch {
    return "unknown";
  }
}

type Row = {
  id: string; namespace: string; name: string | null; status: DeviceStatus; description: string; health: string | null;
  health_at: number | null; last_seen: number | null; registered_at: number; revision: number; updated_at: number;
};

export class DeviceListObject extends SqlObject<Env> {
  protected migrations() {
    return [SCHEMA, METRICS, TALLIES];
  }

  /** Takes the device's summary unless the row already has this revision or a newer one. */
  async publish(s: DeviceSummary, revision: number): Promise<boolean> {
    let applied = false;
    this.ctx.storage.transactionSync(() => {
      const prior = this.one<{ status: string; description: string; revision: number }>("SELECT status, description, revision FROM devices WHERE id = ?", s.id);
      if (prior && prior.revision >= revision) return;
      this.run`INSERT INTO devices (id, namespace, name, status, description, health, health_at, last_seen, registered_at, revision, updated_at)
         VALUES (${s.id}, ${s.namespace}, ${s.name}, ${s.status}, ${s.description}, ${s.health}, ${s.healthAt}, ${s.lastSeen}, ${s.registeredAt}, ${revision}, ${this.clock.now()})
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status, description = excluded.description,
           health = excluded.health, health_at = excluded.health_at, last_seen = excluded.last_seen,
           revision = excluded.revision, updated_at = excluded.updated_at`;
      const version = agentVersion(s.description);
      if (prior) {
        const before = agentVersion(prior.description);
        if (prior.status === s.status && before === version) return void (applied = true);
        this.run("UPDATE metric_devices SET n = n - 1 WHERE status = ? AND version = ?", prior.status, before);
      }
      this.run("INSERT INTO metric_devices (status, version, n) VALUES (?, ?, 1) ON CONFLICT DO UPDATE SET n = n + 1", s.status, version);
      this.run("DELETE FROM metric_devices WHERE n <= 0");
      applied = true;
    });
    return applied;
  }

  /**
   * A device's services by status and deployment parts by state, replacing its previous tally
   * in the totals unless this revision is not newer than the one held (a late or re-sent one).
   */
  async publishTally(id: string, rows: TallyRow[], revision: number): Promise<boolean> {
    let applied = false;
    this.ctx.storage.transactionSync(() => {
      const prior = this.one<{ revision: number; tally: string }>("SELECT revision, tally FROM device_tallies WHERE id = ?", id);
      if (prior && prior.revision >= revision) return;
      for (const r of prior ? (JSON.parse(prior.tally) as TallyRow[]) : []) this.run("UPDATE metric_parts SET n = n - ? WHERE kind = ? AND state = ?", r.n, r.kind, r.state);
      for (const r of rows) this.run("INSERT INTO metric_parts (kind, state, n) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n", r.kind, r.state, r.n);
      this.run("DELETE FROM metric_parts WHERE n <= 0");
      this.run("INSERT INTO device_tallies (id, revision, tally) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, tally = excluded.tally", id, revision, JSON.stringify(rows));
      applied = true;
    });
    return applied;
  }

  /** This shard's devices by status and agent version, and its services and deployment parts by state (a scrape's share). */
  async metrics(): Promise<{ devices: { status: string; version: string; n: number }[]; parts: TallyRow[] }> {
    return {
      devices: this.all<{ status: string; version: string; n: number }>("SELECT status, version, n FROM metric_devices"),
      parts: this.all<TallyRow>("SELECT kind, state, n FROM metric_parts"),
    };
  }

  /** Up to `limit` rows after `after` (a position in this namespace), in (registeredAt, id) order. */
  async page(after: Pick<ListingPosition, "registeredAt" | "id"> | null, status: DeviceStatus | null, limit: number): Promise<DeviceSummary[]> {
    const rows = this.all<Row>`SELECT * FROM devices WHERE (${after?.registeredAt ?? null} IS NULL OR (registered_at, id) > (${after?.registeredAt ?? null}, ${after?.id ?? null})) AND (${status} IS NULL OR status = ${status})
       ORDER BY registered_at, id LIMIT ${limit}`;
    return rows.map((r) => ({
      id: r.id, namespace: r.namespace, name: r.name, status: r.status, description: r.description, health: r.health,
      healthAt: r.health_at, lastSeen: r.last_seen, registeredAt: r.registered_at,
    }));
  }
}

/** Registers this class as the one behind the DEVICE_LIST binding (see src/platform/env.ts). */
declare module "../platform/env.js" {
  interface DurableObjectClasses {
    DEVICE_LIST: DeviceListObject;
  }
}
