/**
 * The device object's events (GET /v1/events): what changed here is written to the event
 * outbox by SQLite triggers, in the same statement as the change (a job's state, the
 * device's status, a deployment part's state), so no writer can forget one and none is lost
 * to a crash between the change and its event. The outbox is sent in batches to the relay
 * of this device's namespace (platform/stubs.ts eventRelayStub), which forwards to the
 * namespace's hub: no object receives a request per device (docs/scale.md, "Events").
 * `publish` adds any other kind (services, rollouts).
 */
import type { Sql } from "./sql-object.js";
import { EventOutbox, EVENT_OUTBOX_TABLE, type OutboxEvent } from "./event-outbox.js";
import type { Clock } from "../core/clock.js";

/** Device objects coalesce their events this long into one request to their relay. */
export const DEVICE_EVENTS_COALESCE_MS = 25;

const insert = (kind: string, device: string, job: string, deployment: string, data: string, at: string) =>
  `INSERT INTO event_outbox (kind, device, job, deployment, data, at) VALUES (${kind}, ${device}, ${job}, ${deployment}, ${data}, ${at});`;
const DEVICE_ID = "(SELECT id FROM device LIMIT 1)";

/** The outbox and the triggers that fill it (a migration of the device object's schema). */
export const DEVICE_EVENTS_SCHEMA =
  EVENT_OUTBOX_TABLE +
  `
CREATE TRIGGER events_device_registered AFTER INSERT ON device BEGIN
  ${insert("'device.registered'", "new.id", "NULL", "NULL", "json_object('name', new.name)", "new.registered_at")}
END;
CREATE TRIGGER events_device_status AFTER UPDATE OF status ON device WHEN new.status <> old.status BEGIN
  ${insert("'device.' || new.status", "new.id", "NULL", "NULL", "json_object('lastSeen', new.last_seen)", "NULL")}
END;
CREATE TRIGGER events_job_created AFTER INSERT ON jobs BEGIN
  ${insert("'job.' || lower(new.state)", DEVICE_ID, "new.id", "new.deployment", "json_object('state', new.state, 'function', new.function, 'module', new.module)", "new.updated_at")}
END;
CREATE TRIGGER events_job_state AFTER UPDATE OF state ON jobs WHEN new.state <> old.state BEGIN
  ${insert(
    "'job.' || lower(new.state)",
    DEVICE_ID,
    "new.id",
    "new.deployment",
    "json_object('state', new.state, 'from', old.state, 'function', new.function, 'attempts', new.attempts, 'error', json_extract(new.error, '$.kind'), 'startedAt', new.started_at, 'finishedAt', new.finished_at)",
    "new.updated_at",
  )}
END;
CREATE TRIGGER events_deployment_placed AFTER INSERT ON deployments BEGIN
  ${insert("'deployment.' || new.state", DEVICE_ID, "NULL", "new.id", "json_object('state', new.state, 'generation', new.generation)", "new.updated_at")}
END;
CREATE TRIGGER events_deployment_state AFTER UPDATE OF state ON deployments WHEN new.state <> old.state BEGIN
  ${insert(
    "CASE new.state WHEN 'active' THEN 'deployment.applied' ELSE 'deployment.' || new.state END",
    DEVICE_ID,
    "NULL",
    "new.id",
    "json_object('state', new.state, 'generation', new.generation, 'reason', new.reason)",
    "new.updated_at",
  )}
END;`;

/** Services' statuses (a later migration: services came after the outbox). */
export const SERVICE_EVENTS_SCHEMA = `
CREATE TRIGGER events_service_created AFTER INSERT ON services BEGIN
  ${insert("'service.' || lower(new.status)", DEVICE_ID, "NULL", "NULL", "json_object('name', new.name, 'status', new.status, 'from', NULL, 'reason', new.reason, 'exitCode', NULL)", "NULL")}
END;
CREATE TRIGGER events_service_status AFTER UPDATE OF status ON services WHEN new.status <> old.status BEGIN
  ${insert("'service.' || lower(new.status)", DEVICE_ID, "NULL", "NULL", "json_object('name', new.name, 'status', new.status, 'from', old.status, 'reason', new.reason, 'exitCode', new.exit_code)", "NULL")}
END;
CREATE TRIGGER events_service_removed AFTER DELETE ON services BEGIN
  ${insert("'service.removed'", DEVICE_ID, "NULL", "NULL", "json_object('name', old.name, 'status', NULL, 'from', old.status, 'reason', NULL, 'exitCode', old.exit_code)", "NULL")}
END;`;

export class DeviceEvents {
  readonly outbox: EventOutbox;

  constructor(
    sql: Sql,
    clock: Clock,
    /** sends a batch to this device's relay; undefined while the device is not registered */
    send: () => ((events: OutboxEvent[]) => Promise<unknown>) | undefined,
    retryBaseMs: number,
    wakeBy: (at: number) => void,
  ) {
    this.outbox = new EventOutbox(sql, send, { clock, coalesceMs: DEVICE_EVENTS_COALESCE_MS, retryBaseMs, wakeBy });
  }

  /** Something the triggers wrote may be waiting: send it soon (`stamp: false`: job or deployment rows, which carry their time). */
  changed(stamp = true) {
    this.outbox.schedule(stamp);
  }

  /** Another kind of event about this device (a service, a rollout wave). */
  publish(kind: string, fields: { job?: string | null; deployment?: string | null; data?: Record<string, unknown> }, device: string) {
    this.outbox.add({ kind, device, job: fields.job ?? null, deployment: fields.deployment ?? null, data: JSON.stringify(fields.data ?? {}) });
  }
}
