/**
 * A device's schedules: cron expressions (with a time zone) and one-shot times that start a
 * job on the device (or a service), fired once per occurrence by the device's object
 * (src/durable/schedules.ts; docs/schedules.md).
 */
import { z } from "zod";
import { DeviceId } from "../../protocol/ids.js";
import { SCHEDULE_LIMITS, ScheduleCreate, ScheduleId, ScheduleList, ScheduleView } from "../../protocol/schedule.js";
import { JobSubmission } from "../../protocol/job.js";
import { checkCron } from "../../core/schedule.js";
import { jsonBody, jsonResponse, problemResponse, route } from "../route.js";
import { annotate, type App, fromOutcome, problem } from "../http.js";
import { callerNamespace, canSeeDevice, deviceNamespace } from "../tenancy.js";
import { signingRequired } from "../signing.js";
import { deviceStub } from "../../platform/stubs.js";
import { checkCall } from "./jobs.js";

const deviceParam = z.object({ id: DeviceId });
const scheduleParam = z.object({ id: DeviceId, scheduleId: ScheduleId });

const create = route({
  method: "post",
  path: "/v1/devices/{id}/schedules",
  problems: [422],
  roles: ["admin", "user"],
  summary:
    "Schedule a job (or a service) on the device: a cron expression in an IANA time zone, or once at a time or after a delay. " +
    "Each occurrence runs at most once; `missed` says what happens to occurrences that passed without a run (skip, or run once on catch-up)",
  request: { params: deviceParam, body: jsonBody(ScheduleCreate) },
  responses: {
    201: jsonResponse(ScheduleView, "The schedule, with its next occurrence"),
    400: problemResponse("The request is not valid, e.g. a bad cron expression, occurrences closer than the minimum interval (10 s for jobs, 60 s for services), or an unknown time zone (the errors name the field)"),
    403: problemResponse("The credential's role may not call this route, or the device's namespace accepts only signed jobs (a schedule's jobs and service starts are not signed)"),
    422: problemResponse("Cannot be scheduled: the module or function does not fit, the one-shot time has passed, the device holds the most schedules, or service schedules are not available"),
  },
});

const list = route({
  method: "get",
  path: "/v1/devices/{id}/schedules",
  roles: ["admin", "user"],
  summary: "The device's schedules, oldest first, each with its next occurrence, the last one fired and how many were missed",
  request: { params: deviceParam },
  responses: { 200: jsonResponse(ScheduleList, "The schedules") },
});

const show = route({
  method: "get",
  path: "/v1/devices/{id}/schedules/{scheduleId}",
  roles: ["admin", "user"],
  summary: "One schedule",
  request: { params: scheduleParam },
  responses: { 200: jsonResponse(ScheduleView, "The schedule") },
});

const pause = route({
  method: "post",
  path: "/v1/devices/{id}/schedules/{scheduleId}/pause",
  roles: ["admin", "user"],
  summary: "Pause a schedule: nothing fires until it is resumed (occurrences meanwhile are neither run nor counted missed)",
  request: { params: scheduleParam },
  responses: { 200: jsonResponse(ScheduleView, "Paused") },
});

const resume = route({
  method: "post",
  path: "/v1/devices/{id}/schedules/{scheduleId}/resume",
  roles: ["admin", "user"],
  summary: "Resume a paused schedule from now on",
  request: { params: scheduleParam },
  responses: { 200: jsonResponse(ScheduleView, "Resumed") },
});

const remove = route({
  method: "delete",
  path: "/v1/devices/{id}/schedules/{scheduleId}",
  roles: ["admin", "user"],
  summary: "Delete a schedule (jobs it already started are left as they are)",
  request: { params: scheduleParam },
  responses: { 200: jsonResponse(z.object({ id: ScheduleId }), "Deleted") },
});

export function scheduleRoutes(app: App) {
  app.openapi(create, async (c) => {
    const id = c.req.valid("param").id;
    const input = c.req.valid("json");
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    if ("cron" in input.timing) {
      const checked = checkCron(input.timing.cron, input.timing.timezone, Date.now(), SCHEDULE_LIMITS.minIntervalMs[input.target.kind]);
      if (!checked.ok) return problem(c, "validation", `${checked.path}: ${checked.message}`, { errors: [{ path: checked.path, message: checked.message }] });
    }
    let requires: string[] = [];
    // A schedule's jobs and service starts are not signed: refused where the namespace requires signatures.
    const ns = await deviceNamespace(c, id);
    if (ns !== null && (await signingRequired(c.env, ns))) {
      return problem(c, "signature-required", `this device's namespace accepts only signed jobs, and a schedule's ${input.target.kind === "job" ? "jobs are" : "service starts are"} not signed`);
    }
    if (input.target.kind === "job") {
      const checked = await checkCall(c, JobSubmission.parse({ ...input.target.submission, device: id }));
      if ("type" in checked) return problem(c, checked.type, `target.submission: ${checked.detail}`);
      requires = checked.requires;
    }
    const out = await deviceStub(c.env, id).createSchedule(callerNamespace(c), input, requires);
    return fromOutcome(c, out, (view) => {
      annotate(c, { event: "schedule created", device: id, scheduleId: view.id });
      return c.json(view, 201, { Location: `/v1/devices/${id}/schedules/${view.id}` });
    });
  });

  app.openapi(list, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).listSchedules(callerNamespace(c)), (schedules) => c.json({ schedules }, 200));
  });

  app.openapi(show, async (c) => {
    const { id, scheduleId } = c.req.valid("param");
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).getSchedule(callerNamespace(c), scheduleId), (v) => c.json(v, 200));
  });

  app.openapi(pause, async (c) => {
    const { id, scheduleId } = c.req.valid("param");
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).pauseSchedule(callerNamespace(c), scheduleId, true), (v) => c.json(v, 200));
  });

  app.openapi(resume, async (c) => {
    const { id, scheduleId } = c.req.valid("param");
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).pauseSchedule(callerNamespace(c), scheduleId, false), (v) => c.json(v, 200));
  });

  app.openapi(remove, async (c) => {
    const { id, scheduleId } = c.req.valid("param");
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).removeSchedule(callerNamespace(c), scheduleId), (v) => c.json(v, 200));
  });
}
