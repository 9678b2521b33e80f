/**
 * The service life cycle, written down once: which statuses exist, what each means, and
 * which events move a service between them. The agent's supervisor
 * (src/device-agent/services/) asks `serviceTransition` before every status it records, so
 * an illegal change is refused, never applied; the control plane shows what the agent
 * reported (and PENDING/KILLED before a start or after a cancel it decided itself).
 * Which way a service goes when its process ends (BACKOFF, EXITED or CRASHED) is the
 * restart budget's decision (restart-budget.ts); this table only says what is allowed.
 */
import type { ServiceStatus } from "../protocol/service.js";

/** What each status means (docs/services.md shows this table). */
export const SERVICE_STATUS_MEANING: Readonly<Record<ServiceStatus, string>> = {
  PENDING: "created with a delayed start (startAt / startAfterMs): starts then, unless canceled",
  STARTING: "a process is being started (module fetched, compiled, child spawned)",
  RUNNING: "its process runs",
  STOPPED: "suspended by a user: the process is frozen (SIGSTOP, no CPU) or, if it had none, not started; resume continues it",
  BACKOFF: "its process ended and the restart budget allows a restart: it starts again at restartAt",
  EXITED: "its process ended cleanly (exit code 0 or the entry returned) and the policy does not restart clean exits",
  KILLED: "stopped for good by a user (kill, or a pending start canceled); only a new run (a schedule's occurrence) starts it again",
  CRASHED: "the restart budget is spent (or the policy is never): not restarted until the budget re-arms (after rearmAfterMs, or a user's reset)",
};

export type ServiceEvent =
  /** created with a delayed start */
  | "schedule"
  /** created suspended */
  | "create_stopped"
  /** created to start now */
  | "create"
  /** a pending start's time came */
  | "due"
  /** a user canceled a pending start */
  | "cancel"
  /** the child process is up */
  | "spawned"
  /** a user suspended it */
  | "suspend"
  /** a user resumed a frozen process (SIGCONT) */
  | "resume_frozen"
  /** a user resumed a service that had no process (created stopped, or suspended while waiting to restart) */
  | "resume_start"
  /** its process ended (or could not start) and the budget allows a restart */
  | "exit_restart"
  /** its process ended cleanly and the policy does not restart that */
  | "exit_clean"
  /** its process ended and the budget is spent */
  | "exit_crashed"
  /** the backoff delay is over */
  | "restart_due"
  /** the budget re-armed (cool-off over, or a user's reset) */
  | "rearm"
  /** a user killed it */
  | "kill"
  /** a new run was asked for (a schedule's occurrence): whatever it was doing ends and it starts afresh */
  | "new_run";

type Row = { event: ServiceEvent; from: readonly (ServiceStatus | null)[]; to: ServiceStatus };

const ALIVE = ["STARTING", "RUNNING", "STOPPED"] as const;
const ALL: readonly ServiceStatus[] = ["PENDING", "STARTING", "RUNNING", "STOPPED", "BACKOFF", "EXITED", "KILLED", "CRASHED"];

/** The table: `null` in `from` is a service that does not exist yet. */
export const SERVICE_TRANSITIONS: readonly Row[] = [
  { event: "schedule", from: [null], to: "PENDING" },
  { event: "create_stopped", from: [null], to: "STOPPED" },
  { event: "create", from: [null], to: "STARTING" },
  { event: "due", from: ["PENDING"], to: "STARTING" },
  { event: "cancel", from: ["PENDING"], to: "KILLED" },
  { event: "spawned", from: ["STARTING"], to: "RUNNING" },
  { event: "suspend", from: ["STARTING", "RUNNING", "BACKOFF"], to: "STOPPED" },
  { event: "resume_frozen", from: ["STOPPED"], to: "RUNNING" },
  { event: "resume_start", from: ["STOPPED"], to: "STARTING" },
  { event: "exit_restart", from: ALIVE, to: "BACKOFF" },
  { event: "exit_clean", from: ALIVE, to: "EXITED" },
  { event: "exit_crashed", from: ALIVE, to: "CRASHED" },
  { event: "restart_due", from: ["BACKOFF"], to: "STARTING" },
  { event: "rearm", from: ["CRASHED"], to: "STARTING" },
  { event: "kill", from: ["PENDING", "STARTING", "RUNNING", "STOPPED", "BACKOFF", "EXITED", "CRASHED"], to: "KILLED" },
  { event: "new_run", from: ALL, to: "STARTING" },
];

export type ServiceTransition = { ok: true; to: ServiceStatus } | { ok: false; reason: string };

/** Where `event` takes a service in status `from` (null: not created yet), or why it cannot. */
export function serviceTransition(from: ServiceStatus | null, event: ServiceEvent): ServiceTransition {
  const row = SERVICE_TRANSITIONS.find((r) => r.event === event && r.from.includes(from));
  return row ? { ok: true, to: row.to } : { ok: false, reason: `${event} is not allowed ${from === null ? "before the service exists" : `in status ${from}`}` };
}

/** Statuses in which the service has (or is getting) a process. */
export function hasProcess(status: ServiceStatus): boolean {
  return status === "STARTING" || status === "RUNNING" || status === "STOPPED";
}

/** Statuses that stay until a user (or a schedule, or the budget's re-arm) acts. */
export function isSettled(status: ServiceStatus): boolean {
  return status === "EXITED" || status === "KILLED" || status === "CRASHED";
}
