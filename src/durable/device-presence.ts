/**
 * Presence: the device's registration row (name, description, namespace, credential),
 * whether it is online (seen within the heartbeat timeout), its health, whether it is
 * drained, and keeping its row in the device listing (GET /v1/devices) current by
 * publishing only what changed.
 */
import type { Sql } from "./sql-object.js";
import type { AlarmTimers } from "./alarm-timers.js";
import { listingFingerprint, listingShard, listingShardName } from "../core/device-listing.js";
import { isOnline } from "../core/timing.js";
import { sha256Hex, timingSafeEqual } from "../core/crypto.js";
import type { Clock } from "../core/clock.js";
import type { DeviceDescription, DeviceStatus, Health } from "../protocol/device.js";
import type { Settings } from "../platform/settings.js";
import type { Env } from "../platform/env.js";
import { deviceListStub, registryStub } from "../platform/stubs.js";

export const DEVICE_TABLE = `
CREATE TABLE device (
  id              TEXT PRIMARY KEY,
  name            TEXT,
  description     TEXT NOT NULL,
  credential_hash TEXT NOT NULL,
  registered_at   INTEGER NOT NULL,
  last_seen       INTEGER,
  health          TEXT,
  health_at       INTEGER,
  status          TEXT NOT NULL DEFAULT 'offline'
);`;

export type DeviceRow = {
  id: string;
  name: string | null;
  description: string;
  credential_hash: string;
  registered_at: number;
  last_seen: number | null;
  health: string | null;
  health_at: number | null;
  status: DeviceStatus;
  drained: number;
  namespace: string;
  /** what the listing was last told (listingFingerprint), when, and the revision of the newest publish begun */
  published: string | null;
  published_at: number | null;
  published_revision: number;
};

/** Health alone (which changes on every heartbeat) reaches the device listing at most this often. */
const LISTING_HEALTH_REFRESH_MS = 10 * 60_000;
/** A publish that failed is tried again by the alarm after this long (or sooner, by a heartbeat). */
const LISTING_RETRY_MS = 5_000;
/** Namespaces this isolate has seen recorded in the registry (device objects of a class share an isolate). */
const namespacesNoted = new Set<string>();

export class DevicePresence {
  /** the registration (undefined: this id was never registered) */
  device: DeviceRow | undefined;
  /** the last secret whose hash matched: spares a digest on every agent request */
  private verifiedSecret: string | null = null;
  /** A publish in flight, and what it carries: a second caller for the same change waits for it instead of sending it again. */
  private publishing: { fingerprint: string; done: Promise<void> } | null = null;
  /** When the alarm tries again a publish that failed (null: none failed). */
  private listingRetryAt: number | null = null;
  private linked: ReadonlySet<string> | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly env: Env,
    private readonly clock: Clock,
    private readonly settings: Settings,
    private readonly timers: AlarmTimers,
    private readonly waitUntil: (p: Promise<unknown>) => void,
    /** the device's status or registration changed (its events are waiting in the outbox) */
    private readonly changed: () => void = () => {},
  ) {
    timers.register(() => {
      const d = this.device;
      return [d && d.status === "online" && d.last_seen !== null ? d.last_seen + this.settings.heartbeatTimeoutMs : null, this.listingRetryAt];
    });
  }

  load() {
    this.device = this.sql.one<DeviceRow>("SELECT * FROM device LIMIT 1");
  }

  /** Stores the registration (the caller checked it is new); the namespace is noted first: a device is never stored unlisted. */
  async register(deviceId: string, name: string | null, description: DeviceDescription, credentialHash: string, namespace: string, ensureSchema: () => void) {
    await this.noteNamespace(namespace);
    ensureSchema();
    this.sql.run`INSERT INTO device (id, name, description, credential_hash, registered_at, namespace) VALUES (${deviceId}, ${name}, ${JSON.stringify(description)}, ${credentialHash}, ${this.clock.now()}, ${namespace})`;
    this.load();
    this.changed();
    await this.publishOrRetryLater();
  }

  /** Makes the namespace listable (a global key's GET /v1/devices walks them); once per namespace per isolate. */
  private async noteNamespace(namespace: string) {
    if (namespacesNoted.has(namespace)) return;
    await registryStub(this.env).noteDeviceNamespace(namespace);
    if (namespacesNoted.size >= 10_000) namespacesNoted.clear();
    namespacesNoted.add(namespace);
  }

  /**
   * Every call from the Worker carries the caller's namespace (null: a key that
   * spans all of them); a device of another tenant answers as if it did not
   * exist, so a route that forgets its own check still cannot cross tenants.
   */
  visibleTo(namespace: string | null): boolean {
    return this.device !== undefined && (namespace === null || namespace === this.device.namespace);
  }

  async authenticate(secret: string): Promise<boolean> {
    if (!this.device) return false;
    if (this.verifiedSecret !== null && timingSafeEqual(secret, this.verifiedSecret)) return true;
    if (!timingSafeEqual(await sha256Hex(secret), this.device.credential_hash)) return false;
    this.verifiedSecret = secret;
    return true;
  }

  /** Replaces the credential: the old one is refused from now on. */
  rotateCredential(credentialHash: string) {
    this.sql.run("UPDATE device SET credential_hash = ? WHERE id = ?", credentialHash, this.device!.id);
    this.device!.credential_hash = credentialHash;
    this.verifiedSecret = null;
  }

  /** The host functions this device links (from its description), read once. */
  interfaces(): ReadonlySet<string> {
    this.linked ??= new Set((JSON.parse(this.device!.description) as DeviceDescription).supervisorInterfaces);
    return this.linked;
  }

  recordHealth(health: Health, now: number) {
    this.sql.run`UPDATE device SET health = ${JSON.stringify(health)}, health_at = ${now} WHERE id = ${this.device!.id}`;
    this.device!.health = JSON.stringify(health);
    this.device!.health_at = now;
  }

  /** The agent was heard from: online until the heartbeat timeout. */
  markSeen(now: number) {
    const d = this.device!;
    const wasOnline = d.status === "online";
    d.last_seen = now;
    d.status = "online";
    this.sql.run("UPDATE device SET last_seen = ?, status = 'online' WHERE id = ?", now, d.id);
    if (!wasOnline) {
      this.changed();
      this.waitUntil(this.publishOrRetryLater());
    }
    this.timers.wakeBy(now + this.settings.heartbeatTimeoutMs);
  }

  /** From the alarm: a device not heard from within the heartbeat timeout goes offline. */
  checkOnline(now: number) {
    const d = this.device;
    if (d && d.status === "online" && !isOnline(d.last_seen, now, this.settings.heartbeatTimeoutMs)) {
      d.status = "offline";
      this.sql.run("UPDATE device SET status = 'offline' WHERE id = ?", d.id);
      this.changed();
    }
  }

  /** New labels in the description (selectors match on them), published to the listing now. */
  async setLabels(labels: Record<string, string>) {
    const d = this.device!;
    const description = JSON.parse(d.description) as DeviceDescription;
    description.capabilities = { ...(description.capabilities ?? { cameras: [], sensors: [] }), labels };
    d.description = JSON.stringify(description);
    this.sql.run("UPDATE device SET description = ? WHERE id = ?", d.description, d.id);
    await this.publishOrRetryLater();
  }

  setDrained(drained: boolean) {
    this.device!.drained = drained ? 1 : 0;
    this.sql.run("UPDATE device SET drained = ? WHERE id = ?", this.device!.drained, this.device!.id);
  }

  /**
   * Keeps this device's row in the listing (GET /v1/devices) current by writing only what
   * changed: status, name or description at once, health alone at most every
   * LISTING_HEALTH_REFRESH_MS (GET /v1/devices/:id answers fresh health from this object).
   * A heartbeat that changes nothing listed writes nothing outside this object.
   */
  private publish(): Promise<void> {
    const d = this.device!;
    const now = this.clock.now();
    const shard = listingShard(d.id, this.settings.deviceListShards);
    const fingerprint = listingFingerprint(listingShardName(d.namespace, shard), d);
    if (this.publishing?.fingerprint === fingerprint) return this.publishing.done;
    if (d.published === fingerprint && d.published_at !== null && now - d.published_at < LISTING_HEALTH_REFRESH_MS) return Promise.resolve();
    // The revision is taken before the call, so of two publishes in flight the later state wins in the shard.
    const revision = ++d.published_revision;
    this.sql.run("UPDATE device SET published_revision = ? WHERE id = ?", revision, d.id);
    const done = this.sendToListing(shard, revision).then(() => {
      if (d.published_revision !== revision) return; // a newer publish has begun: it records what it sent
      d.published = fingerprint;
      d.published_at = now;
      this.sql.run`UPDATE device SET published = ${fingerprint}, published_at = ${now} WHERE id = ${d.id}`;
    }).finally(() => {
      if (this.publishing?.done === done) this.publishing = null;
    });
    this.publishing = { fingerprint, done };
    return done;
  }

  /**
   * A listing that is slow or overloaded (a whole fleet changing status at once) must not fail
   * the device's own request: what was not published is not recorded as published, so the next
   * heartbeat or alarm sends it again.
   */
  async publishOrRetryLater() {
    try {
      await this.publish();
      this.listingRetryAt = null;
    } catch (e) {
      console.warn(JSON.stringify({ level: "warn", msg: "device listing publish failed; will retry", deviceId: this.device!.id, error: String(e) }));
      this.listingRetryAt = this.clock.now() + LISTING_RETRY_MS;
      this.timers.wakeBy(this.listingRetryAt);
    }
  }

  private async sendToListing(shard: number, revision: number) {
    const d = this.device!;
    await deviceListStub(this.env, d.namespace, shard).publish({
      id: d.id,
      namespace: d.namespace,
      name: d.name,
      status: d.status,
      description: d.description,
      health: d.health,
      healthAt: d.health_at,
      lastSeen: d.last_seen,
      registeredAt: d.registered_at,
    }, revision);
  }
}
