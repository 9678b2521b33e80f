/** The device object's database: its schema versions in order (each runs once; see sql-object.ts). */
import { CALL_COLUMNS, IDEMPOTENCY_TABLE, INDEX_FEED_TABLES, JOB_LOGS_TABLE, JOBS_TABLE } from "./job-row.js";
import { DEPLOYMENT_FLOORS_TABLE, DEPLOYMENT_TABLES } from "./device-deployments.js";
import { DEVICE_TABLE } from "./device-presence.js";
import { AGENT_LOGS_TABLE } from "./agent-logs.js";
import { SCHEDULES_TABLE } from "./schedules.js";
import { SERVICE_CRASHES_TABLE, SERVICE_TABLES } from "./device-services.js";
import { DEVICE_EVENTS_SCHEMA, SERVICE_EVENTS_SCHEMA } from "./device-events.js";
import { AGENT_SESSIONS_TABLE } from "./agent-epochs.js";
import { COMMANDS_TABLE } from "./device-commands.js";
import { FAILOVER_TABLE } from "./job-failover.js";
import { TALLY_TABLE } from "./device-tallies.js";

export const DEVICE_MIGRATIONS: readonly string[] = [
  DEVICE_TABLE + JOBS_TABLE,
  IDEMPOTENCY_TABLE,
  "ALTER TABLE device ADD COLUMN drained INTEGER NOT NULL DEFAULT 0",
  JOB_LOGS_TABLE,
  INDEX_FEED_TABLES,
  "ALTER TABLE device ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default'",
  AGENT_LOGS_TABLE,
  DEPLOYMENT_TABLES + CALL_COLUMNS,
  DEPLOYMENT_FLOORS_TABLE,
  "ALTER TABLE device ADD COLUMN published TEXT; ALTER TABLE device ADD COLUMN published_at INTEGER; ALTER TABLE device ADD COLUMN published_revision INTEGER NOT NULL DEFAULT 0",
  // retention (docs/retention.md): ended jobs and idempotency keys by age
  "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL; CREATE INDEX idempotency_by_time ON idempotency (created_at)",
  // the index shard this object's feed feeds (index-feed.ts: a new one is fed from the start)
  "ALTER TABLE index_state ADD COLUMN target TEXT",
  // schedules (schedules.ts, docs/schedules.md)
  SCHEDULES_TABLE,
  // services (docs/services.md): desired and actual state, pending starts, occurrences, output ring
  SERVICE_TABLES,
  // the event stream (GET /v1/events): an outbox filled by triggers (device-events.ts)
  DEVICE_EVENTS_SCHEMA,
  // fencing (agent-epochs.ts): agent sessions and their epochs
  AGENT_SESSIONS_TABLE,
  // bounded commands (device-commands.ts): each command to the agent, its expiry and outcome
  COMMANDS_TABLE,
  // W3C traceparent of the submitting request (docs/observability.md)
  "ALTER TABLE jobs ADD COLUMN traceparent TEXT",
  // offline policies of jobs (job-failover.ts), and the last reconcile the agent reported (honest status)
  FAILOVER_TABLE +
    "ALTER TABLE deployment_version ADD COLUMN reconciled_at INTEGER; ALTER TABLE deployment_version ADD COLUMN reconcile_note TEXT; ALTER TABLE deployment_version ADD COLUMN fetched_version INTEGER; ALTER TABLE deployment_version ADD COLUMN fetched_at INTEGER;" +
    "ALTER TABLE deployments ADD COLUMN applied_generation INTEGER",
  // schedules (schedules.ts): why the last occurrence got no run, and consecutive firing failures (back-off, then pause)
  "ALTER TABLE schedules ADD COLUMN reason TEXT; ALTER TABLE schedules ADD COLUMN failures INTEGER NOT NULL DEFAULT 0",
  // crashes and restarts of services as reported (device-services.ts): a rollout's gate counts those on its new version
  SERVICE_CRASHES_TABLE,
  // GET /metrics: what this device last sent its listing shard of its services and deployment parts (device-tallies.ts)
  TALLY_TABLE,
  // the event stream: services' statuses (device-events.ts)
  SERVICE_EVENTS_SCHEMA,
];
