/**
 * The one registry object: API keys (hashed), orchestrator keys, namespace
 * settings, facade labels, the deployment listing, and which namespaces have
 * devices. The device listing itself lives in sharded DeviceListObjects
 * (device-list-object.ts): it is written on device status changes, far too
 * often for one object at fleet scale (docs/scale.md).
 */
import { SqlObject } from "./sql-object.js";
import { fail, ok, type Outcome } from "./rpc.js";
import { sha256Hex, timingSafeEqual } from "../core/crypto.js";
import { deviceCredentialKey } from "../core/device-credential.js";
import { facadeLabel } from "../core/facade-label.js";
import { formatApiKey, newKeyId, newSecret, randomBase32 } from "../protocol/ids.js";
import type { Role, KeyView } from "../protocol/keys.js";
import type { NamespaceSettings, OrchestratorKeyView, Retention, SigningAlgorithm } from "../protocol/signing.js";
import { withRetentionDefaults } from "../protocol/signing.js";
import { iso } from "../core/time.js";
import type { Env } from "../platform/env.js";

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

const TRUST_SCHEMA = `
CREATE TABLE orchestrator_keys (
  kid        TEXT PRIMARY KEY,
  alg        TEXT NOT NULL,
  jwk        TEXT NOT NULL,
  namespace  TEXT,
  label      TEXT,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE TABLE used_jtis (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL);
CREATE TABLE namespace_settings (namespace TEXT PRIMARY KEY, require_signed_jobs INTEGER NOT NULL DEFAULT 0);`;

type TrustRow = { kid: string; alg: SigningAlgorithm; jwk: string; namespace: string | null; label: string | null; created_at: number; revoked_at: number | null };
const orchestratorKeyView = (r: TrustRow): OrchestratorKeyView => ({
  kid: r.kid, alg: r.alg, jwk: JSON.parse(r.jwk) as Record<string, string>, namespace: r.namespace, label: r.label,
  createdAt: new Date(r.created_at).toISOString(), revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at).toISOString(),
});

const ROLLOUTS_TABLE = `
CREATE TABLE rollouts (
  namespace  TEXT NOT NULL,
  id         TEXT NOT NULL,
  deployment TEXT NOT NULL,
  state      TEXT NOT NULL,
  targets    INTEGER NOT NULL,
  revision   INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, id)
);
CREATE INDEX rollouts_by_deployment ON rollouts (namespace, deployment, state);
CREATE INDEX rollouts_by_time ON rollouts (created_at, namespace, id);`;

/** A rollout in these states holds its deployment: a second one is refused (409). */
export const ACTIVE_ROLLOUT_STATES = ["running", "paused", "rolling_back"] as const;
/** A claim whose rollout object still does not exist this long after is dropped when checked. */
const STALE_CLAIM_MS = 60_000;
const ACTIVE_SQL = `state IN (${ACTIVE_ROLLOUT_STATES.map((s) => `'${s}'`).join(", ")})`;

export type RolloutListRow = { namespace: string; id: string; deployment: string; state: string; targets: number; createdAt: string; updatedAt: string };
type RolloutIndexRow = { namespace: string; id: string; deployment: string; state: string; targets: number; revision: number; created_at: number; updated_at: number };

type KeyRow = { id: string; role: Role; label: string | null; namespace: string | null; hash: string; created_at: number; revoked_at: number | null };

const keyView = (r: KeyRow): KeyView => ({ id: r.id, role: r.role, label: r.label, namespace: r.namespace, createdAt: iso(r.created_at)!, revokedAt: iso(r.revoked_at) });

export class RegistryObject extends SqlObject<Env> {
  protected migrations() {
    return [
      SCHEMA,
      "ALTER TABLE api_keys ADD COLUMN namespace TEXT; ALTER TABLE devices ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default'",
      TRUST_SCHEMA,
      "CREATE TABLE facade_labels (hash TEXT PRIMARY KEY, device_id TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL)",
      "CREATE TABLE deployments (namespace TEXT NOT NULL, id TEXT NOT NULL, source TEXT NOT NULL, generation INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (namespace, id))",
      // A removed deployment's row stays (hidden) with the removal's generation, so a late publish of an older one cannot bring it back.
      "ALTER TABLE deployments ADD COLUMN removed INTEGER NOT NULL DEFAULT 0",
      // The device listing moved to sharded objects; what is left here is which namespaces have devices.
      "CREATE TABLE device_namespaces (namespace TEXT PRIMARY KEY); INSERT INTO device_namespaces SELECT DISTINCT namespace FROM devices; DROP TABLE devices",
      // a namespace's retention (JSON Retention; docs/retention.md)
      "ALTER TABLE namespace_settings ADD COLUMN retention TEXT",
      // Facade labels are derived from a rotation number (core/facade-label.ts); labels drawn at random before stay until rotated.
      "ALTER TABLE facade_labels ADD COLUMN rotation INTEGER NOT NULL DEFAULT 0; CREATE TABLE facade_rotations (device_id TEXT PRIMARY KEY, rotation INTEGER NOT NULL)",
      // the rollout listing, and which rollout of a deployment is active (each rollout's object publishes its state here)
      ROLLOUTS_TABLE,
      // dashboard sessions logged out before their expiry (src/worker/session.ts); a row goes once its token has expired
      "CREATE TABLE revoked_sessions (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL); CREATE INDEX revoked_sessions_by_exp ON revoked_sessions (exp)",
    ];
  }

  // ---- namespaces that have devices (a global listing walks them; written once per namespace) ----

  async noteDeviceNamespace(namespace: string): Promise<void> {
    this.run("INSERT OR IGNORE INTO device_namespaces (namespace) VALUES (?)", namespace);
  }

  /** Up to `limit` namespaces with devices, in order, from `from` on (inclusive). */
  async deviceNamespaces(from: string | null, limit: number): Promise<string[]> {
    return this.all<{ namespace: string }>`SELECT namespace FROM device_namespaces WHERE ${from} IS NULL OR namespace >= ${from} ORDER BY namespace LIMIT ${limit}`.map((r) => r.namespace);
  }

  // ---- the deployment listing (each deployment's object publishes here, as devices do) ----

  /** Publishes arrive in any order: only a newer generation replaces the row. */
  async upsertDeployment(namespace: string, id: string, source: string, generation: number): Promise<void> {
    this.run`INSERT INTO deployments (namespace, id, source, generation, updated_at) VALUES (${namespace}, ${id}, ${source}, ${generation}, ${this.clock.now()})
       ON CONFLICT (namespace, id) DO UPDATE SET source = excluded.source, generation = excluded.generation, updated_at = excluded.updated_at, removed = 0
       WHERE excluded.generation > deployments.generation`;
  }

  async dropDeployment(namespace: string, id: string, generation: number): Promise<void> {
    this.run`INSERT INTO deployments (namespace, id, source, generation, updated_at, removed) VALUES (${namespace}, ${id}, '', ${generation}, ${this.clock.now()}, 1)
       ON CONFLICT (namespace, id) DO UPDATE SET generation = excluded.generation, updated_at = excluded.updated_at, removed = 1
       WHERE excluded.generation > deployments.generation`;
  }

  /** Deployments by id, `limit` at a time after the cursor; all namespaces for `null`. */
  async listDeployments(namespace: string | null, limit: number, after: string | null): Promise<{ deployments: { namespace: string; id: string; source: string; generation: number; updatedAt: string }[]; next: string | null }> {
    const rows = this.all<{ namespace: string; id: string; source: string; generation: number; updated_at: number }>`SELECT * FROM deployments WHERE removed = 0 AND (${namespace} IS NULL OR namespace = ${namespace}) AND (${after} IS NULL OR namespace || '/' || id > ${after}) ORDER BY namespace, id LIMIT ${limit + 1}`;
    const page = rows.slice(0, limit).map((r) => ({ namespace: r.namespace, id: r.id, source: r.source, generation: r.generation, updatedAt: iso(r.updated_at)! }));
    return { deployments: page, next: rows.length > limit ? `${page.at(-1)!.namespace}/${page.at(-1)!.id}` : null };
  }

  /** Listed deployments by source, of one namespace or all (GET /metrics). */
  async deploymentCounts(namespace: string | null): Promise<{ source: string; n: number }[]> {
    return this.all<{ source: string; n: number }>`SELECT source, COUNT(*) AS n FROM deployments WHERE removed = 0 AND (${namespace} IS NULL OR namespace = ${namespace}) GROUP BY source`;
  }

  // ---- the rollout listing: one row per rollout, and at most one active per deployment ----

  /**
   * Records a new rollout as active (running) unless another rollout of the same deployment
   * is: then `active` names it (the caller checks it with its object, see settleRollout).
   * `state` "rolling_back": an aborted rollout's rollback takes the deployment back.
   */
  async claimRollout(namespace: string, id: string, deployment: string, targets: number, state: "running" | "rolling_back" = "running", revision = 0): Promise<{ claimed: true } | { claimed: false; active: string } | { claimed: false; exists: true }> {
    const now = this.clock.now();
    let out: { claimed: true } | { claimed: false; active: string } | { claimed: false; exists: true } = { claimed: true };
    this.ctx.storage.transactionSync(() => {
      const other = this.one<{ id: string }>(`SELECT id FROM rollouts WHERE namespace = ? AND deployment = ? AND id != ? AND ${ACTIVE_SQL} ORDER BY created_at LIMIT 1`, namespace, deployment, id);
      if (other) {
        out = { claimed: false, active: other.id };
        return;
      }
      const mine = this.one<RolloutIndexRow>("SELECT * FROM rollouts WHERE namespace = ? AND id = ?", namespace, id);
      if (mine && state === "running") {
        out = { claimed: false, exists: true };
        return;
      }
      if (mine) this.run("UPDATE rollouts SET state = ?, revision = MAX(revision, ?), updated_at = ? WHERE namespace = ? AND id = ?", state, revision, now, namespace, id);
      else this.run`INSERT INTO rollouts (namespace, id, deployment, state, targets, created_at, updated_at) VALUES (${namespace}, ${id}, ${deployment}, ${state}, ${targets}, ${now}, ${now})`;
    });
    return out;
  }

  /**
   * A rollout's object publishes its state (revision: its own count of state changes; an
   * older publish arriving late changes nothing); a rollout missing here (started before
   * the listing existed) is added. `state` null: the rollout does not exist (its creation
   * failed after the claim): the row goes, freeing the deployment, once it is older than a
   * creation takes (a claim whose object is being created right now stays).
   */
  async settleRollout(namespace: string, id: string, state: string | null, revision: number, entry?: { deployment: string; targets: number; createdAt: number }): Promise<void> {
    const now = this.clock.now();
    if (state === null) {
      this.run("DELETE FROM rollouts WHERE namespace = ? AND id = ? AND created_at < ?", namespace, id, now - STALE_CLAIM_MS);
      return;
    }
    if (!entry) {
      this.run("UPDATE rollouts SET state = ?, revision = ?, updated_at = ? WHERE namespace = ? AND id = ? AND revision < ?", state, revision, now, namespace, id, revision);
      return;
    }
    this.run`INSERT INTO rollouts (namespace, id, deployment, state, targets, revision, created_at, updated_at) VALUES (${namespace}, ${id}, ${entry.deployment}, ${state}, ${entry.targets}, ${revision}, ${entry.createdAt}, ${now})
      ON CONFLICT (namespace, id) DO UPDATE SET state = excluded.state, revision = excluded.revision, updated_at = excluded.updated_at WHERE excluded.revision > rollouts.revision`;
  }

  /** Rollouts newest first, `limit` at a time after the keyset cursor; all namespaces for `null`. */
  async listRollouts(q: { namespace: string | null; state: string | null; deployment: string | null; limit: number; after: { createdAt: number; namespace: string; id: string } | null }): Promise<{ rollouts: RolloutListRow[]; next: { createdAt: number; namespace: string; id: string } | null }> {
    const a = q.after;
    const rows = this.all<RolloutIndexRow>`SELECT * FROM rollouts
      WHERE (${q.namespace} IS NULL OR namespace = ${q.namespace}) AND (${q.state} IS NULL OR state = ${q.state}) AND (${q.deployment} IS NULL OR deployment = ${q.deployment})
        AND (${a === null ? 1 : 0} = 1 OR (created_at, namespace, id) < (${a?.createdAt ?? 0}, ${a?.namespace ?? ""}, ${a?.id ?? ""}))
      ORDER BY created_at DESC, namespace DESC, id DESC LIMIT ${q.limit + 1}`;
    const page = rows.slice(0, q.limit);
    const last = page.at(-1);
    return {
      rollouts: page.map((r) => ({ namespace: r.namespace, id: r.id, deployment: r.deployment, state: r.state, targets: r.targets, createdAt: iso(r.created_at)!, updatedAt: iso(r.updated_at)! })),
      next: rows.length > q.limit && last ? { createdAt: last.created_at, namespace: last.namespace, id: last.id } : null,
    };
  }

  // ---- dashboard sessions: the revocation list (logout) and the per-request check ----

  /** Revokes a session until `expiresAtMs` (its token's expiry; a row past it is deleted, 100 at a time, on later revocations). */
  async revokeSession(jti: string, expiresAtMs: number): Promise<void> {
    this.run("DELETE FROM revoked_sessions WHERE jti IN (SELECT jti FROM revoked_sessions WHERE exp < ? ORDER BY exp LIMIT 100)", this.clock.now());
    this.run("INSERT INTO revoked_sessions (jti, exp) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING", jti, expiresAtMs);
  }

  /** One lookup per session request: is it logged out, and is its key (none for the bootstrap admin) still active. */
  async sessionState(keyId: string | null, jti: string): Promise<{ revoked: boolean; key: { role: Role; namespace: string | null } | null }> {
    const revoked = this.one("SELECT 1 AS x FROM revoked_sessions WHERE jti = ?", jti) !== undefined;
    return { revoked, key: keyId === null || revoked ? null : await this.activeKey(keyId) };
  }

  /** Rollouts by state, of one namespace or all (GET /metrics), from the listing each rollout's object publishes to. */
  async rolloutCounts(namespace: string | null): Promise<{ state: string; n: number }[]> {
    return this.all<{ state: string; n: number }>`SELECT state, COUNT(*) AS n FROM rollouts WHERE ${namespace} IS NULL OR namespace = ${namespace} GROUP BY state`;
  }

  // ---- wasmiot facade labels: the capability a legacy orchestrator carries in a host name ----

  /** Issues a new label for the device (an older one stops working); only its hash is kept. */
  /**
   * The device's facade label: the one in force (`issued: false`), or, when there is none or
   * `rotate` is asked, the next rotation's (the old one stops answering). Null without a key.
   */
  async issueFacadeLabel(deviceId: string, rotate = false): Promise<{ label: string; issued: boolean } | null> {
    const key = deviceCredentialKey(this.env.DEVICE_CREDENTIAL_KEY);
    if (!key) return null;
    const current = this.one<{ rotation: number; active: number }>(
      "SELECT r.rotation AS rotation, EXISTS (SELECT 1 FROM facade_labels l WHERE l.device_id = r.device_id AND l.rotation = r.rotation) AS active FROM facade_rotations r WHERE r.device_id = ?",
      deviceId,
    );
    if (current?.active && !rotate) return { label: await facadeLabel(await key, deviceId, current.rotation), issued: false };
    const rotation = (current?.rotation ?? 0) + 1;
    const label = await facadeLabel(await key, deviceId, rotation);
    const hash = await sha256Hex(label);
    this.ctx.storage.transactionSync(() => {
      this.run("INSERT INTO facade_rotations (device_id, rotation) VALUES (?, ?) ON CONFLICT (device_id) DO UPDATE SET rotation = excluded.rotation", deviceId, rotation);
      this.run`INSERT INTO facade_labels (hash, device_id, created_at, rotation) VALUES (${hash}, ${deviceId}, ${this.clock.now()}, ${rotation}) ON CONFLICT (device_id) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at, rotation = excluded.rotation`;
    });
    return { label, issued: true };
  }

  async revokeFacadeLabel(deviceId: string): Promise<boolean> {
    return this.run("DELETE FROM facade_labels WHERE device_id = ?", deviceId) > 0;
  }

  async facadeDevice(label: string): Promise<string | null> {
    return this.one<{ device_id: string }>("SELECT device_id FROM facade_labels WHERE hash = ?", await sha256Hex(label))?.device_id ?? null;
  }

  // ---- orchestrator keys, replay protection, namespace settings ----------------------

  async addOrchestratorKey(kid: string, alg: SigningAlgorithm, jwk: string, label: string | null, namespace: string | null): Promise<Outcome<OrchestratorKeyView>> {
    if (this.one("SELECT 1 AS x FROM orchestrator_keys WHERE kid = ?", kid)) return fail("conflict", `a key with kid ${kid} is already registered`);
    this.run`INSERT INTO orchestrator_keys (kid, alg, jwk, namespace, label, created_at) VALUES (${kid}, ${alg}, ${jwk}, ${namespace}, ${label}, ${this.clock.now()})`;
    return ok(orchestratorKeyView(this.one<TrustRow>("SELECT * FROM orchestrator_keys WHERE kid = ?", kid)!));
  }

  async orchestratorKey(kid: string): Promise<OrchestratorKeyView | null> {
    const row = this.one<TrustRow>("SELECT * FROM orchestrator_keys WHERE kid = ?", kid);
    return row ? orchestratorKeyView(row) : null;
  }

  async listOrchestratorKeys(namespace: string | null): Promise<OrchestratorKeyView[]> {
    return this.all<TrustRow>("SELECT * FROM orchestrator_keys WHERE ? IS NULL OR namespace = ? ORDER BY created_at", namespace, namespace).map(orchestratorKeyView);
  }

  async revokeOrchestratorKey(kid: string, namespace: string | null): Promise<Outcome<OrchestratorKeyView>> {
    const row = this.one<TrustRow>("SELECT * FROM orchestrator_keys WHERE kid = ?", kid);
    if (!row || (namespace !== null && row.namespace !== namespace)) return fail("not-found", `no orchestrator key ${kid}`);
    if (row.revoked_at === null) this.run("UPDATE orchestrator_keys SET revoked_at = ? WHERE kid = ?", this.clock.now(), kid);
    return ok(orchestratorKeyView(this.one<TrustRow>("SELECT * FROM orchestrator_keys WHERE kid = ?", kid)!));
  }

  /** True the first time a (key, jti) is seen; remembered until the token expires. */
  async consumeJti(id: string, expiresAtMs: number): Promise<boolean> {
    const now = this.clock.now();
    if (++this.jtiWrites % 100 === 0) this.run("DELETE FROM used_jtis WHERE exp < ?", now);
    const existing = this.one<{ exp: number }>("SELECT exp FROM used_jtis WHERE jti = ?", id);
    if (existing && existing.exp >= now) return false;
    this.run("INSERT OR REPLACE INTO used_jtis (jti, exp) VALUES (?, ?)", id, expiresAtMs);
    return true;
  }
  private jtiWrites = 0;

  async namespaceSettings(namespace: string): Promise<NamespaceSettings> {
    const row = this.one<{ require_signed_jobs: number; retention: string | null }>("SELECT require_signed_jobs, retention FROM namespace_settings WHERE namespace = ?", namespace);
    return {
      requireSignedJobs: row?.require_signed_jobs === 1,
      retention: withRetentionDefaults(row?.retention ? (JSON.parse(row.retention) as Partial<Retention>) : undefined),
    };
  }

  async setNamespaceSettings(namespace: string, s: NamespaceSettings): Promise<NamespaceSettings> {
    this.run`INSERT INTO namespace_settings (namespace, require_signed_jobs, retention) VALUES (${namespace}, ${s.requireSignedJobs ? 1 : 0}, ${JSON.stringify(s.retention)})
       ON CONFLICT (namespace) DO UPDATE SET require_signed_jobs = excluded.require_signed_jobs, retention = excluded.retention`;
    return this.namespaceSettings(namespace);
  }

  async createKey(role: Role, label: string | null, namespace: string | null): Promise<KeyView & { key: string }> {
    const id = newKeyId();
    const secret = newSecret();
    const now = this.clock.now();
    this.run`INSERT INTO api_keys (id, role, label, namespace, hash, created_at) VALUES (${id}, ${role}, ${label}, ${namespace}, ${await sha256Hex(secret)}, ${now})`;
    return { ...keyView({ id, role, label, namespace, hash: "", created_at: now, revoked_at: null }), key: formatApiKey(id, secret) };
  }

  /** The key's role and namespace if the secret matches a key that is not revoked. */
  async verifyKey(id: string, secret: string): Promise<{ role: Role; namespace: string | null } | null> {
    const row = this.one<KeyRow>("SELECT * FROM api_keys WHERE id = ?", id);
    if (!row || row.revoked_at !== null) return null;
    return timingSafeEqual(await sha256Hex(secret), row.hash) ? { role: row.role, namespace: row.namespace } : null;
  }

  /** A key's role and namespace while it is not revoked (a dashboard session names its key by id: src/worker/session.ts). */
  async activeKey(id: string): Promise<{ role: Role; namespace: string | null } | null> {
    const row = this.one<KeyRow>("SELECT * FROM api_keys WHERE id = ?", id);
    return row && row.revoked_at === null ? { role: row.role, namespace: row.namespace } : null;
  }

  /** Keys of one namespace, or all of them for `null`. */
  async listKeys(namespace: string | null): Promise<KeyView[]> {
    return this.all<KeyRow>("SELECT * FROM api_keys WHERE ? IS NULL OR namespace = ? ORDER BY created_at", namespace, namespace).map(keyView);
  }

  async revokeKey(id: string, namespace: string | null): Promise<Outcome<KeyView>> {
    const row = this.one<KeyRow>("SELECT * FROM api_keys WHERE id = ?", id);
    if (!row || (namespace !== null && row.namespace !== namespace)) return fail("not-found", `no key ${id}`);
    if (row.revoked_at === null) this.run("UPDATE api_keys SET revoked_at = ? WHERE id = ?", this.clock.now(), id);
    return ok(keyView(this.one<KeyRow>("SELECT * FROM api_keys WHERE id = ?", id)!));
  }
}

/** Registers this class as the one behind the REGISTRY binding (see src/platform/env.ts). */
declare module "../platform/env.js" {
  interface DurableObjectClasses {
    REGISTRY: RegistryObject;
  }
}
