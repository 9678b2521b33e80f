/**
 * The JSON-RPC methods, in Hero's naming. Each names the REST route it is: the
 * RPC endpoint replays the call through the same app (auth, validation, handler),
 * so there is no second implementation. rpc.discover is generated from this table.
 */
import { z } from "zod";
import { DeviceId, JobId } from "../../protocol/ids.js";
import { JobLogs, JobState, JobSubmission, JobView, LIMITS } from "../../protocol/job.js";
import { DeviceRegistration, DeviceStatus, DeviceView, RegistrationResult } from "../../protocol/device.js";
import { KeyCreate, KeyCreated, KeyView } from "../../protocol/keys.js";
import { ScheduleCreate, ScheduleId, ScheduleList, ScheduleView } from "../../protocol/schedule.js";
import { RemovedServices, ServiceBySelector, ServiceList, ServiceLogs, ServiceName, ServiceSpec, ServiceView } from "../../protocol/service.js";

export interface RestCall {
  method: "GET" | "POST" | "DELETE";
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /** a body sent as is, for routes that take something other than JSON */
  raw?: { contentType: string; body: string };
}

export interface RpcMethod<P extends z.ZodObject = z.ZodObject> {
  name: string;
  summary: string;
  params: P;
  result: z.ZodType;
  rest(params: z.output<P>): RestCall;
}

const method = <P extends z.ZodObject>(m: RpcMethod<P>) => m as unknown as RpcMethod;

const JobIdParams = z.object({ id: JobId });
const DeviceIdParams = z.object({ id: DeviceId });
const Wait = z.number().min(0).max(LIMITS.maxWaitSeconds);
const OfDevice = DeviceId.meta({ description: "the device" });
const ScheduleParams = z.object({ id: OfDevice, scheduleId: ScheduleId });

const ServiceParams = z.object({ device: DeviceId, name: ServiceName });
const serviceAction = (verb: "suspend" | "resume" | "kill" | "cancel" | "reset", summary: string) =>
  method({ name: `service.${verb}`, summary, params: ServiceParams, result: ServiceView, rest: ({ device, name }) => ({ method: "POST", path: `/v1/devices/${device}/services/${name}/${verb}` }) });

/** Services (docs/services.md), in the process supervisor's verbs. */
const SERVICE_METHODS: RpcMethod[] = [
  method({
    name: "service.create",
    summary: "Create a service on a device (start now, stopped, or later)",
    params: z.object({ device: DeviceId, spec: ServiceSpec }),
    result: ServiceView,
    rest: ({ device, spec }) => ({ method: "POST", path: `/v1/devices/${device}/services`, body: spec }),
  }),
  method({
    name: "service.place",
    summary: "Create a service on the device a selector picks: the healthy match holding the fewest services (POST /v1/services)",
    params: z.object({ spec: ServiceBySelector }),
    result: ServiceView,
    rest: ({ spec }) => ({ method: "POST", path: "/v1/services", body: spec }),
  }),
  method({ name: "service.list", summary: "A device's services", params: z.object({ device: DeviceId }), result: ServiceList, rest: ({ device }) => ({ method: "GET", path: `/v1/devices/${device}/services` }) }),
  method({ name: "service.status", summary: "One service's status, reason, exit code, restarts, last error, CPU and memory", params: ServiceParams, result: ServiceView, rest: ({ device, name }) => ({ method: "GET", path: `/v1/devices/${device}/services/${name}` }) }),
  serviceAction("suspend", "Suspend a service (its process is frozen)"),
  serviceAction("resume", "Resume a suspended service"),
  serviceAction("kill", "Kill a service for good (a pending start is canceled)"),
  serviceAction("cancel", "Cancel a pending (delayed) start"),
  serviceAction("reset", "Reset a service's restart budget (a CRASHED one starts again)"),
  method({ name: "service.remove", summary: "Remove a service whatever its status", params: ServiceParams, result: RemovedServices, rest: ({ device, name }) => ({ method: "DELETE", path: `/v1/devices/${device}/services/${name}` }) }),
  method({
    name: "service.removeMany",
    summary: "Remove several services of a device at once",
    params: z.object({ device: DeviceId, names: z.array(ServiceName).min(1).max(64) }),
    result: RemovedServices,
    rest: ({ device, names }) => ({ method: "POST", path: `/v1/devices/${device}/services/remove`, body: { names } }),
  }),
  method({
    name: "service.logs",
    summary: "A service's recent output lines (a bounded ring)",
    params: ServiceParams.extend({ limit: z.number().int().min(1).max(1000).optional(), after: z.number().int().min(0).optional() }),
    result: ServiceLogs,
    rest: ({ device, name, limit, after }) => ({ method: "GET", path: `/v1/devices/${device}/services/${name}/logs`, query: { limit, after } }),
  }),
];

export const METHODS: readonly RpcMethod[] = [
  method({
    name: "jobs.create",
    summary: "Create a job; it is queued only with start: true (otherwise call job.start)",
    params: JobSubmission.extend({ start: z.boolean().default(false) }),
    result: JobView,
    rest: (p) => ({ method: "POST", path: "/v1/jobs", body: p }),
  }),
  method({
    name: "jobs.list",
    summary: "List jobs in creation order (filters: device, status; cursor pagination)",
    params: z.object({ device: DeviceId.optional(), status: JobState.optional(), limit: z.number().int().min(1).max(500).optional(), cursor: z.string().max(200).optional() }),
    result: z.object({ jobs: z.array(z.object({ id: z.string(), device: z.string(), state: JobState, function: z.string(), module: z.string(), createdAt: z.string(), updatedAt: z.string() })), nextCursor: z.string().nullable() }),
    rest: (p) => ({ method: "GET", path: "/v1/jobs", query: p }),
  }),
  method({
    name: "job.run",
    summary: "Create a job and wait up to `wait` seconds for it to end",
    params: JobSubmission.omit({ start: true }).extend({ wait: Wait.default(30) }),
    result: JobView,
    rest: ({ wait, ...job }) => ({ method: "POST", path: "/v1/jobs", query: { wait }, body: job }),
  }),
  method({
    name: "jobs.createSigned",
    summary: "Submit a job signed by a registered orchestrator key (compact JWT with a `job` claim); waits up to `wait` seconds",
    params: z.object({ token: z.string().min(1).max(64 * 1024), wait: Wait.default(0) }),
    result: JobView,
    rest: ({ token, wait }) => ({ method: "POST", path: "/v1/jobs/signed", query: { wait }, raw: { contentType: "application/jose", body: token } }),
  }),
  method({ name: "job.start", summary: "Queue a created job", params: JobIdParams, result: JobView, rest: ({ id }) => ({ method: "POST", path: `/v1/jobs/${id}/start` }) }),
  method({ name: "job.status", summary: "A job's state, attempts, result or error", params: JobIdParams, result: JobView, rest: ({ id }) => ({ method: "GET", path: `/v1/jobs/${id}` }) }),
  method({
    name: "job.result",
    summary: "The job once it has ended, blocking up to `wait` seconds (then its current state)",
    params: JobIdParams.extend({ wait: Wait.default(30) }),
    result: JobView,
    rest: ({ id, wait }) => ({ method: "GET", path: `/v1/jobs/${id}/result`, query: { wait } }),
  }),
  method({ name: "job.stop", summary: "Cancel a job (a running one is stopped on the device)", params: JobIdParams, result: JobView, rest: ({ id }) => ({ method: "POST", path: `/v1/jobs/${id}/cancel` }) }),
  method({ name: "job.delete", summary: "Delete an ended job with its result and logs", params: JobIdParams, result: z.object({ id: JobId }), rest: ({ id }) => ({ method: "DELETE", path: `/v1/jobs/${id}` }) }),
  method({ name: "job.logs", summary: "The job's output lines with timestamps", params: JobIdParams, result: JobLogs, rest: ({ id }) => ({ method: "GET", path: `/v1/jobs/${id}/logs` }) }),
  method({
    name: "runner.register",
    summary: "Register a device (a runner); answers its credential once",
    params: DeviceRegistration,
    result: RegistrationResult,
    rest: (p) => ({ method: "POST", path: "/v1/devices/register", body: p }),
  }),
  method({
    name: "runner.list",
    summary: "List devices",
    params: z.object({ limit: z.number().int().min(1).max(500).optional(), cursor: DeviceId.optional(), status: DeviceStatus.optional() }),
    result: z.object({ devices: z.array(DeviceView), nextCursor: z.string().nullable() }),
    rest: (p) => ({ method: "GET", path: "/v1/devices", query: p }),
  }),
  method({ name: "runner.status", summary: "One device", params: DeviceIdParams, result: DeviceView, rest: ({ id }) => ({ method: "GET", path: `/v1/devices/${id}` }) }),
  method({
    name: "runner.logs",
    summary: "The agent's own recent log lines",
    params: DeviceIdParams.extend({ limit: z.number().int().min(1).max(1000).optional() }),
    result: z.object({ lines: z.array(z.object({ seq: z.number(), at: z.number(), level: z.string(), msg: z.string(), fields: z.string().optional() })) }),
    rest: ({ id, limit }) => ({ method: "GET", path: `/v1/devices/${id}/logs`, query: { limit } }),
  }),
  method({ name: "runner.stop", summary: "Drain a device: no new work, running jobs finish", params: DeviceIdParams, result: DeviceView, rest: ({ id }) => ({ method: "POST", path: `/v1/devices/${id}/drain` }) }),
  method({ name: "runner.start", summary: "Resume a drained device", params: DeviceIdParams, result: DeviceView, rest: ({ id }) => ({ method: "POST", path: `/v1/devices/${id}/resume` }) }),
  // ---- schedules (docs/schedules.md) ----
  method({
    name: "schedules.create",
    summary: "Schedule a job on a device: a cron expression in a time zone, or once at a time / after a delay; each occurrence runs at most once",
    params: ScheduleCreate.extend({ id: OfDevice }),
    result: ScheduleView,
    rest: ({ id, ...body }) => ({ method: "POST", path: `/v1/devices/${id}/schedules`, body }),
  }),
  method({ name: "schedules.list", summary: "A device's schedules", params: z.object({ id: OfDevice }), result: ScheduleList, rest: ({ id }) => ({ method: "GET", path: `/v1/devices/${id}/schedules` }) }),
  method({ name: "schedule.status", summary: "One schedule: next occurrence, last fired, missed count", params: ScheduleParams, result: ScheduleView, rest: ({ id, scheduleId }) => ({ method: "GET", path: `/v1/devices/${id}/schedules/${scheduleId}` }) }),
  method({ name: "schedule.pause", summary: "Pause a schedule", params: ScheduleParams, result: ScheduleView, rest: ({ id, scheduleId }) => ({ method: "POST", path: `/v1/devices/${id}/schedules/${scheduleId}/pause` }) }),
  method({ name: "schedule.resume", summary: "Resume a paused schedule from now on", params: ScheduleParams, result: ScheduleView, rest: ({ id, scheduleId }) => ({ method: "POST", path: `/v1/devices/${id}/schedules/${scheduleId}/resume` }) }),
  method({ name: "schedule.delete", summary: "Delete a schedule", params: ScheduleParams, result: z.object({ id: ScheduleId }), rest: ({ id, scheduleId }) => ({ method: "DELETE", path: `/v1/devices/${id}/schedules/${scheduleId}` }) }),
  method({ name: "key.create", summary: "Create an API key (secret shown once)", params: KeyCreate, result: KeyCreated, rest: (p) => ({ method: "POST", path: "/v1/keys", body: p }) }),
  method({ name: "key.list", summary: "List API keys", params: z.object({}), result: z.object({ keys: z.array(KeyView) }), rest: () => ({ method: "GET", path: "/v1/keys" }) }),
  method({ name: "key.remove", summary: "Revoke an API key", params: z.object({ id: z.string().max(64) }), result: KeyView, rest: ({ id }) => ({ method: "DELETE", path: `/v1/keys/${id}` }) }),
  method({
    name: "supervisor.info",
    summary: "What this control plane is and its limits",
    params: z.object({}),
    result: z.object({ name: z.string(), version: z.string(), transports: z.array(z.string()), limits: z.record(z.string(), z.number()), time: z.string() }),
    rest: () => ({ method: "GET", path: "/v1/info" }),
  }),
  ...SERVICE_METHODS,
];

export const METHOD_BY_NAME = new Map(METHODS.map((m) => [m.name, m]));
