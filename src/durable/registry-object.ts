/**
 * The one registry object: API keys (hashed) and the device listing. Device
 * objects publish their summary here, so listing devices never fans out to
 * every device object.
 */
import { SqlObject } from "./sql-object.js";
import { fail, ok, type Outcome } from "./rpc.js";
import { sha256Hex, timingSafeEqual } from "../core/crypto.js";
import { formatApiKey, newKeyId, newSecret } from "../protocol/ids.js";
import type { Role, KeyView } from "../protocol/keys.js";
import type { DeviceStatus } from "../protocol/device.js";
import type { Env } from "../worker/env.js";

const SCHEMA = `
CREATE TABLE api_keys (
  id         TEXT PRIMARY KEY,
  role       TEXT NOT NULL,
  label      TEXT,
  hash       TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE TABLE devices (
  id            TEXT PRIMARY KEY,
  name          TEXT,
  status        TEXT NOT NULL,
  description   TEXT NOT NULL,
  health        TEXT,
  health_at     INTEGER,
  last_seen     INTEGER,
  registered_at INTEGER NOT NULL
);`;

/** What a device object publishes; JSON columns stay strings to keep RPC types flat. */
export interface DeviceSummary {
  id: string;
  namespace: string;
  name: string | null;
  status: DeviceStatus;
  description: string;
  health: string | null;
  healthAt: number | null;
  lastSeen: number | null;
  registeredAt: number;
}

type KeyRow = { id: string; role: Role; label: string | null; namespace: string | null; hash: string; created_at: number; revoked_at: number | null };
type DeviceRow = { id: string; namespace: string; name: string | null; status: DeviceStatus; description: string; health: string | null; health_at: number | null; last_seen: number | null; registered_at: number };

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const keyView = (r: KeyRow): KeyView => ({ id: r.id, role: r.role, label: r.label, namespace: r.namespace, createdAt: iso(r.created_at)!, revokedAt: iso(r.revoked_at) });

export function registryStub(env: Env) {
  return env.REGISTRY.get(env.REGISTRY.idFromName("global"));
}

export class RegistryObject extends SqlObject<Env> {
  protected migrations() {
    return [
      SCHEMA,
      "ALTER TABLE api_keys ADD COLUMN namespace TEXT; ALTER TABLE devices ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default'",
    ];
  }

  async createKey(role: Role, label: string | null, namespace: string | null): Promise<KeyView & { key: string }> {
    const id = newKeyId();
    const secret = newSecret();
    const now = Date.now();
    this.run("INSERT INTO api_keys (id, role, label, namespace, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)", id, role, label, namespace, await sha256Hex(secret), now);
    return { ...keyView({ id, role, label, namespace, hash: "", created_at: now, revoked_at: null }), key: formatApiKey(id, secret) };
  }

  /** The key's role and namespace if the secret matches a key that is not revoked. */
  async verifyKey(id: string, secret: string): Promise<{ role: Role; namespace: string | null } | null> {
    const row = this.one<KeyRow>("SELECT * FROM api_keys WHERE id = ?", id);
    if (!row || row.revoked_at !== null) return null;
    return timingSafeEqual(await sha256Hex(secret), row.hash) ? { role: row.role, namespace: row.namespace } : null;
  }

  /** Keys of one namespace, or all of them for `null`. */
  async listKeys(namespace: string | null): Promise<KeyView[]> {
    return this.all<KeyRow>("SELECT * FROM api_keys WHERE ? IS NULL OR namespace = ? ORDER BY created_at", namespace, namespace).map(keyView);
  }

  async revokeKey(id: string, namespace: string | null): Promise<Outcome<KeyView>> {
    const row = this.one<KeyRow>("SELECT * FROM api_keys WHERE id = ?", id);
    if (!row || (namespace !== null && row.namespace !== namespace)) return fail("not-found", `no key ${id}`);
    if (row.revoked_at === null) this.run("UPDATE api_keys SET revoked_at = ? WHERE id = ?", Date.now(), id);
    return ok(keyView(this.one<KeyRow>("SELECT * FROM api_keys WHERE id = ?", id)!));
  }

  async upsertDevice(s: DeviceSummary): Promise<void> {
    this.run(
      `INSERT INTO devices (id, namespace, name, status, description, health, health_at, last_seen, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status, description = excluded.description,
         health = excluded.health, health_at = excluded.health_at, last_seen = excluded.last_seen`,
      s.id, s.namespace, s.name, s.status, s.description, s.health, s.healthAt, s.lastSeen, s.registeredAt,
    );
  }

  /** Devices in registration order, `limit` at a time after the cursor (a device id). */
  async listDevices(limit: number, after: string | null, status: DeviceStatus | null, namespace: string | null): Promise<{ devices: DeviceSummary[]; next: string | null }> {
    const rows = this.all<DeviceRow>(
      `SELECT * FROM devices WHERE (? IS NULL OR (registered_at, id) > (SELECT registered_at, id FROM devices WHERE id = ?))
         AND (? IS NULL OR status = ?) AND (? IS NULL OR namespace = ?) ORDER BY registered_at, id LIMIT ?`,
      after, after, status, status, namespace, namespace, limit + 1,
    );
    const page = rows.slice(0, limit).map((r) => ({
      id: r.id, namespace: r.namespace, name: r.name, status: r.status, description: r.description, health: r.health,
      healthAt: r.health_at, lastSeen: r.last_seen, registeredAt: r.registered_at,
    }));
    return { devices: page, next: rows.length > limit ? page[page.length - 1]!.id : null };
  }
}
