/**
 * The device's services (docs/services.md): what is desired of each (its spec; running,
 * suspended or killed; the run and budget-reset counters the agent compares with its
 * own), what its agent last reported (status, reason, exit code, restarts used, last
 * error, CPU, memory) and a bounded ring of its output lines. One-shot delayed starts
 * (PENDING) are due times on the object's alarm; a schedule starts a run through
 * `startFromSchedule`, once per occurrence id. Every change of what is desired bumps
 * `version`, which the agent learns over its socket, a poll or a heartbeat answer, and
 * then fetches the desired services (as for deployments).
 */
import { fail, ok, type Outcome } from "./rpc.js";
import type { Sql } from "./sql-object.js";
import type { Clock } from "../core/clock.js";
import { iso } from "../core/time.js";
import { isSettled } from "../core/service-lifecycle.js";
import type { LogLine } from "../protocol/job.js";
import {
  SERVICE_LIMITS, ServiceSpec,
  type DesiredService, type DesiredServices, type ServiceActual, type ServiceDesired, type ServiceStatus, type ServiceView,
} from "../protocol/service.js";

/** Occurrence ids kept per service (the most recent ones), against a retried fire of the same occurrence. */
export const KEPT_OCCURRENCES = 16;

export const SERVICE_TABLES = `
CREATE TABLE services (
  name        TEXT PRIMARY KEY,
  spec        TEXT NOT NULL,
  desired     TEXT NOT NULL,
  pending_at  INTEGER,
  run         INTEGER NOT NULL,
  resets      INTEGER NOT NULL DEFAULT 0,
  status      TEXT NOT NULL,
  status_run  INTEGER NOT NULL DEFAULT 0,
  reason      TEXT NOT NULL,
  exit_code   INTEGER,
  restarts    INTEGER NOT NULL DEFAULT 0,
  last_error  TEXT,
  started_at  INTEGER,
  restart_at  INTEGER,
  pid         INTEGER,
  cpu_ms      REAL NOT NULL DEFAULT 0,
  cpu_percent REAL NOT NULL DEFAULT 0,
  rss_bytes   REAL NOT NULL DEFAULT 0,
  created_at  INTEGER NOT NULL,
  reported_at INTEGER
);
CREATE INDEX services_pending ON services (pending_at) WHERE pending_at IS NOT NULL;
CREATE TABLE service_occurrences (name TEXT NOT NULL, occurrence TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (name, occurrence));
CREATE TABLE service_logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, at INTEGER NOT NULL, stream TEXT NOT NULL, line TEXT NOT NULL);
CREATE INDEX service_logs_by_name ON service_logs (name, seq);
CREATE TABLE service_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT INTO service_version (id, version) VALUES (1, 0);`;

/**
 * Crashes and restarts of services as the agent's reports show them (a rollout's gate counts
 * those of services on its new version, since each device was sent it). Each row: one report
 * that showed `n` more, with the service's module and the deployment it runs in (kept when
 * the service is removed). The newest CRASH_ROWS rows are kept.
 */
export const SERVICE_CRASHES_TABLE = `
CREATE TABLE service_crashes (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, module TEXT NOT NULL, deployment TEXT, at INTEGER NOT NULL, n INTEGER NOT NULL);
CREATE INDEX service_crashes_by_time ON service_crashes (at);`;
const CRASH_ROWS = 2_000;
const FAILING: readonly ServiceStatus[] = ["BACKOFF", "CRASHED"];

type Row = {
  name: string; spec: string; desired: ServiceDesired; pending_at: number | null; run: number; resets: number;
  status: ServiceStatus; status_run: number; reason: string; exit_code: number | null; restarts: number; last_error: string | null;
  started_at: number | null; restart_at: number | null; pid: number | null; cpu_ms: number; cpu_percent: number; rss_bytes: number;
  created_at: number; reported_at: number | null;
};

export interface DeviceServicesParts {
  sql: Sql;
  clock: Clock;
  transaction: (fn: () => void) => void;
  deviceId: () => string;
  /** the alarm must fire by then (a pending start) */
  wakeBy: (at: number) => void;
  /** the desired services changed: tell the agent */
  notify: (version: number) => void;
  /** the agent reported statuses (GET /metrics counts them: device-tallies.ts) */
  reported?: () => void;
}

/** Keeps the ring of a service's lines at this many. */
const RING = SERVICE_LIMITS.ringLines;

export class DeviceServices {
  constructor(private readonly p: DeviceServicesParts) {}

  get version(): number {
    return this.p.sql.one<{ version: number }>("SELECT version FROM service_version")?.version ?? 0;
  }

  private changed() {
    this.p.sql.run("UPDATE service_version SET version = version + 1");
    this.p.notify(this.version);
  }

  private row(name: string): Row | undefined {
    return this.p.sql.one<Row>`SELECT * FROM services WHERE name = ${name}`;
  }

  private view(r: Row): ServiceView {
    return {
      device: this.p.deviceId(),
      name: r.name,
      spec: JSON.parse(r.spec) as ServiceView["spec"],
      desired: r.desired,
      status: r.status,
      reason: r.reason,
      exitCode: r.exit_code,
      restarts: r.restarts,
      lastError: r.last_error,
      startedAt: iso(r.started_at),
      restartAt: iso(r.restart_at),
      startAt: iso(r.pending_at),
      pid: r.pid,
      cpuMs: r.cpu_ms,
      cpuPercent: r.cpu_percent,
      rssBytes: r.rss_bytes,
      run: r.run,
      createdAt: iso(r.created_at)!,
      reportedAt: iso(r.reported_at),
    };
  }

  private answer(name: string): Outcome<ServiceView> {
    const r = this.row(name);
    return r ? ok(this.view(r)) : fail("not-found", `no service ${name} on this device`);
  }

  create(input: ServiceSpec): Outcome<ServiceView> {
    const spec = ServiceSpec.parse(input); // defaults filled in, as stored
    if (this.row(spec.name)) return fail("conflict", `service ${spec.name} already exists on this device (remove it first, or choose another name)`);
    const count = this.p.sql.one<{ n: number }>("SELECT COUNT(*) AS n FROM services")!.n;
    if (count >= SERVICE_LIMITS.maxServicesPerDevice) return fail("conflict", `a device holds at most ${SERVICE_LIMITS.maxServicesPerDevice} services`);
    const now = this.p.clock.now();
    const startAt = spec.startAt ? Date.parse(spec.startAt) : spec.startAfterMs ? now + spec.startAfterMs : null;
    const pending = startAt !== null && startAt > now ? startAt : null;
    const desired: ServiceDesired = spec.startStopped ? "suspended" : "running";
    const status: ServiceStatus = pending !== null ? "PENDING" : spec.startStopped ? "STOPPED" : "STARTING";
    const reason = pending !== null ? "waiting for its delayed start" : spec.startStopped ? "created stopped: resume starts it" : "waiting for the agent to start it";
    this.p.transaction(() => {
      this.p.sql.run`INSERT INTO services (name, spec, desired, pending_at, run, status, reason, created_at)
        VALUES (${spec.name}, ${JSON.stringify(spec)}, ${desired}, ${pending}, 1, ${status}, ${reason}, ${now})`;
      this.changed();
    });
    if (pending !== null) this.p.wakeBy(pending);
    return this.answer(spec.name);
  }

  /** Whether a service of this name exists on the device (the schedules part checks it). */
  has(name: string): boolean {
    return this.row(name) !== undefined;
  }

  list(): ServiceView[] {
    return this.p.sql.all<Row>("SELECT * FROM services ORDER BY name").map((r) => this.view(r));
  }

  get(name: string): Outcome<ServiceView> {
    return this.answer(name);
  }

  /** Only the agent's statuses of settled services stay; a user changes desired state, the agent's report follows. */
  private setDesired(name: string, desired: ServiceDesired, allowed: (r: Row) => string | null): Outcome<ServiceView> {
    const r = this.row(name);
    if (!r) return fail("not-found", `no service ${name} on this device`);
    if (r.desired === desired) return ok(this.view(r)); // already asked: idempotent
    const refusal = allowed(r);
    if (refusal) return fail("conflict", refusal);
    this.p.transaction(() => {
      this.p.sql.run`UPDATE services SET desired = ${desired} WHERE name = ${name}`;
      this.changed();
    });
    return this.answer(name);
  }

  suspend(name: string): Outcome<ServiceView> {
    return this.setDesired(name, "suspended", (r) =>
      r.desired === "killed" ? `service ${name} was killed` : r.pending_at !== null ? `service ${name} has not started yet (cancel its pending start instead)` : isSettled(r.status) ? `service ${name} is ${r.status}: nothing runs to suspend` : null,
    );
  }

  resume(name: string): Outcome<ServiceView> {
    return this.setDesired(name, "running", (r) => (r.desired === "killed" ? `service ${name} was killed: create it again (or let its schedule start a new run)` : null));
  }

  kill(name: string): Outcome<ServiceView> {
    const r = this.row(name);
    if (r && r.pending_at !== null) return this.cancel(name, "killed before its delayed start");
    return this.setDesired(name, "killed", () => null);
  }

  /** Cancels a pending (delayed) start: the service is KILLED without ever starting. */
  cancel(name: string, reason = "its pending start was canceled"): Outcome<ServiceView> {
    const r = this.row(name);
    if (!r) return fail("not-found", `no service ${name} on this device`);
    if (r.pending_at === null) return fail("conflict", `service ${name} has no pending start (it is ${r.status})`);
    this.p.transaction(() => {
      this.p.sql.run`UPDATE services SET pending_at = NULL, desired = 'killed', status = 'KILLED', reason = ${reason} WHERE name = ${name}`;
      this.changed();
    });
    return this.answer(name);
  }

  /** A user's reset of the restart budget: the agent re-arms it (a CRASHED service starts again). */
  reset(name: string): Outcome<ServiceView> {
    const r = this.row(name);
    if (!r) return fail("not-found", `no service ${name} on this device`);
    this.p.transaction(() => {
      this.p.sql.run`UPDATE services SET resets = resets + 1 WHERE name = ${name}`;
      this.changed();
    });
    return this.answer(name);
  }

  /** Removes services whatever their status: the agent ends their processes and deletes their files. */
  remove(names: string[]): { removed: string[]; absent: string[] } {
    const removed: string[] = [];
    const absent: string[] = [];
    this.p.transaction(() => {
      for (const name of new Set(names)) {
        if (this.p.sql.run`DELETE FROM services WHERE name = ${name}` === 0) {
          absent.push(name);
          continue;
        }
        this.p.sql.run`DELETE FROM service_logs WHERE name = ${name}`;
        this.p.sql.run`DELETE FROM service_occurrences WHERE name = ${name}`;
        removed.push(name);
      }
      if (removed.length) this.changed();
    });
    return { removed, absent };
  }

  /**
   * The hook a schedule calls: starts (or restarts) the service as a new run, once per
   * occurrence id. A repeated call with the same occurrence (a retried fire) changes
   * nothing and answers started: false.
   */
  startFromSchedule(name: string, occurrenceId: string, now: number): Outcome<{ started: boolean; run: number }> {
    const r = this.row(name);
    if (!r) return fail("not-found", `no service ${name} on this device`);
    let started = false;
    this.p.transaction(() => {
      started = this.p.sql.run`INSERT OR IGNORE INTO service_occurrences (name, occurrence, at) VALUES (${name}, ${occurrenceId}, ${now})` > 0;
      if (!started) return;
      this.p.sql.run`UPDATE services SET run = run + 1, desired = 'running', pending_at = NULL, status = 'STARTING',
        reason = ${`started by schedule occurrence ${occurrenceId}`.slice(0, 500)}, exit_code = NULL, restart_at = NULL WHERE name = ${name}`;
      // Only the last few occurrence ids are kept: a retried fire is of a recent occurrence (and
      // the schedule's own handled-through mark stops older ones), so more is only storage.
      this.p.sql.run`DELETE FROM service_occurrences WHERE name = ${name} AND occurrence NOT IN
        (SELECT occurrence FROM service_occurrences WHERE name = ${name} ORDER BY at DESC, occurrence DESC LIMIT ${KEPT_OCCURRENCES})`;
      this.changed();
    });
    return ok({ started, run: this.row(name)!.run });
  }

  /** The earliest pending start (for the alarm). */
  nextDue(): number | null {
    return this.p.sql.one<{ at: number | null }>("SELECT MIN(pending_at) AS at FROM services WHERE pending_at IS NOT NULL")?.at ?? null;
  }

  /** Pending starts whose time came: they are desired running now (from the alarm). */
  startDue(now: number): number {
    let n = 0;
    this.p.transaction(() => {
      n = this.p.sql.run`UPDATE services SET pending_at = NULL, status = 'STARTING', reason = 'its delayed start came: waiting for the agent' WHERE pending_at IS NOT NULL AND pending_at <= ${now}`;
      if (n) this.changed();
    });
    return n;
  }

  /** What the agent must hold: every service that is not waiting for its delayed start. */
  desired(): DesiredServices {
    const rows = this.p.sql.all<Row>("SELECT * FROM services WHERE pending_at IS NULL ORDER BY name");
    return {
      version: this.version,
      services: rows.map((r): DesiredService => ({
        spec: JSON.parse(r.spec) as DesiredService["spec"],
        desired: r.desired,
        run: r.run,
        resets: r.resets,
        ended: r.status_run === r.run && (r.status === "EXITED" || r.status === "CRASHED"),
      })),
    };
  }

  /** The agent's heartbeat: each service's actual status (of the current run only) and new output lines. */
  report(actuals: ServiceActual[], now: number) {
    if (actuals.length === 0) return;
    this.p.transaction(() => {
      for (const a of actuals) {
        const r = this.row(a.name);
        if (!r || r.pending_at !== null || a.run !== r.run) continue; // removed, not started yet, or an earlier run
        this.noteCrashes(r, a, now);
        this.p.sql.run`UPDATE services SET status = ${a.status}, status_run = ${a.run}, reason = ${a.reason}, exit_code = ${a.exitCode},
          restarts = ${a.restarts}, last_error = ${a.lastError}, started_at = ${a.startedAt}, restart_at = ${a.restartAt}, pid = ${a.pid},
          cpu_ms = ${a.cpuMs}, cpu_percent = ${a.cpuPercent}, rss_bytes = ${a.rssBytes}, reported_at = ${now} WHERE name = ${a.name}`;
        if (a.lines.length) this.appendLines(a.name, a.lines);
      }
    });
    this.p.reported?.();
  }

  /**
   * How many crashes and restarts this report shows that the last one of the same run did
   * not: the restarts count grew (restarts between two beats count too), or the service
   * entered BACKOFF or CRASHED (a failure the budget did not restart counts once). A count that
   * fell out of the budget's window and grew again between two beats is undercounted.
   */
  private noteCrashes(r: Row, a: ServiceActual, now: number) {
    const sameRun = r.status_run === a.run && r.reported_at !== null;
    const grown = Math.max(0, a.restarts - (sameRun ? r.restarts : 0));
    const entered = FAILING.includes(a.status) && !(sameRun && r.status === a.status && a.restarts === r.restarts);
    const n = Math.max(grown, entered ? 1 : 0);
    if (n === 0) return;
    const spec = JSON.parse(r.spec) as ServiceSpec;
    const deployment = typeof spec.sandbox === "object" ? spec.sandbox.deployment : null;
    this.p.sql.run`INSERT INTO service_crashes (name, module, deployment, at, n) VALUES (${r.name}, ${spec.module}, ${deployment}, ${now}, ${n})`;
    this.p.sql.run`DELETE FROM service_crashes WHERE seq <= (SELECT seq FROM service_crashes ORDER BY seq DESC LIMIT 1 OFFSET ${CRASH_ROWS})`;
  }

  /**
   * Services on a deployment's version (run in its module directory, or of one of `digests`):
   * how many the device holds now, and their crashes and restarts reported since `since`.
   */
  crashesOf(deployment: string, digests: readonly string[], since: number): { services: number; crashes: number; names: string[] } {
    const onVersion = (module: string, dep: string | null) => dep === deployment || digests.includes(module);
    const services = this.p.sql.all<{ spec: string }>("SELECT spec FROM services").filter((r) => {
      const spec = JSON.parse(r.spec) as ServiceSpec;
      return onVersion(spec.module, typeof spec.sandbox === "object" ? spec.sandbox.deployment : null);
    }).length;
    const rows = this.p.sql.all<{ name: string; module: string; deployment: string | null; n: number }>`SELECT name, module, deployment, n FROM service_crashes WHERE at >= ${since} ORDER BY seq`
      .filter((c) => onVersion(c.module, c.deployment));
    const names = [...new Set(rows.map((c) => c.name))];
    return { services, crashes: rows.reduce((sum, c) => sum + c.n, 0), names: names.slice(0, 10) };
  }

  private appendLines(name: string, lines: LogLine[]) {
    for (const l of lines) this.p.sql.run`INSERT INTO service_logs (name, at, stream, line) VALUES (${name}, ${l.at}, ${l.stream}, ${l.line})`;
    this.p.sql.run`DELETE FROM service_logs WHERE name = ${name} AND seq <= (SELECT seq FROM service_logs WHERE name = ${name} ORDER BY seq DESC LIMIT 1 OFFSET ${RING})`;
  }

  /** The last `limit` lines of the ring, oldest first (`after`: only lines past that seq). */
  logs(name: string, limit: number, after = 0): Outcome<{ lines: (LogLine & { seq: number })[] }> {
    if (!this.row(name)) return fail("not-found", `no service ${name} on this device`);
    const lines = this.p.sql
      .all<{ seq: number; at: number; stream: "stdout" | "stderr"; line: string }>`SELECT seq, at, stream, line FROM service_logs WHERE name = ${name} AND seq > ${after} ORDER BY seq DESC LIMIT ${limit}`
      .reverse();
    return ok({ lines });
  }

  /** Per service, for the device's own view. */
  summary(): { name: string; status: ServiceStatus; cpuPercent: number; rssBytes: number }[] {
    return this.p.sql.all<Row>("SELECT name, status, cpu_percent, rss_bytes FROM services ORDER BY name").map((r) => ({ name: r.name, status: r.status, cpuPercent: r.cpu_percent, rssBytes: r.rss_bytes }));
  }
}
