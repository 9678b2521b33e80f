import { z } from "zod";
import { DeviceId, formatDeviceCredential, newDeviceId, newSecret } from "../../protocol/ids.js";
import { DeviceDescription, DeviceRegistration, DeviceStatus, DeviceView, Health, RegistrationResult } from "../../protocol/device.js";
import { registryStub, type DeviceSummary } from "../../durable/registry-object.js";
import { sha256Hex } from "../../core/crypto.js";
import { AgentLogLine } from "../../protocol/agent.js";
import { jsonBody, jsonResponse, route } from "../route.js";
import { annotate, type App, fromOutcome, problem } from "../http.js";
import { callerNamespace, canSeeDevice, namespaceForNewDevice } from "../tenancy.js";
import { deviceStub } from "../stubs.js";
import { iso } from "../../core/time.js";

const register = route({
  method: "post",
  path: "/v1/devices/register",
  roles: ["register", "admin"],
  summary: "Register a device; answers its credential once",
  request: { body: jsonBody(DeviceRegistration) },
  responses: { 201: jsonResponse(RegistrationResult, "The device id and its credential (stored hashed)") },
});

const DeviceListItem = DeviceView.omit({ queue: true });

const list = route({
  method: "get",
  path: "/v1/devices",
  roles: ["admin", "user"],
  summary: "List devices with status and latest health",
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(500).default(100),
      cursor: DeviceId.optional(),
      status: DeviceStatus.optional(),
    }),
  },
  responses: { 200: jsonResponse(z.object({ devices: z.array(DeviceListItem), nextCursor: z.string().nullable() }), "A page of devices") },
});

const show = route({
  method: "get",
  path: "/v1/devices/{id}",
  roles: ["admin", "user"],
  summary: "One device: description, health, status and queue depth",
  request: { params: z.object({ id: DeviceId }) },
  responses: { 200: jsonResponse(DeviceView, "The device"), 404: jsonResponse(z.unknown(), "No such device") },
});

const drain = route({
  method: "post",
  path: "/v1/devices/{id}/drain",
  roles: ["admin", "user"],
  summary: "Stop giving the device new work; jobs it runs finish",
  request: { params: z.object({ id: DeviceId }) },
  responses: { 200: jsonResponse(DeviceView, "Drained") },
});

const resume = route({
  method: "post",
  path: "/v1/devices/{id}/resume",
  roles: ["admin", "user"],
  summary: "Give a drained device work again",
  request: { params: z.object({ id: DeviceId }) },
  responses: { 200: jsonResponse(DeviceView, "Resumed") },
});

const agentLogs = route({
  method: "get",
  path: "/v1/devices/{id}/logs",
  roles: ["admin", "user"],
  summary: "The agent's own recent log lines, shipped with its heartbeats (Hero's runner.logs)",
  request: { params: z.object({ id: DeviceId }), query: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(200) }) },
  responses: { 200: jsonResponse(z.object({ lines: z.array(AgentLogLine.extend({ seq: z.number().int() })) }), "Oldest first") },
});


function listItem(s: DeviceSummary): z.infer<typeof DeviceListItem> {
  return {
    id: s.id,
    namespace: s.namespace,
    name: s.name,
    status: s.status,
    description: DeviceDescription.parse(JSON.parse(s.description)),
    health: s.health ? { ...Health.parse(JSON.parse(s.health)), at: iso(s.healthAt)! } : null,
    registeredAt: iso(s.registeredAt)!,
    lastSeenAt: iso(s.lastSeen),
  };
}

export function deviceRoutes(app: App) {
  app.openapi(register, async (c) => {
    const body = c.req.valid("json");
    const deviceId = newDeviceId();
    const secret = newSecret();
    const out = await deviceStub(c.env, deviceId).register(deviceId, body.name ?? null, body.description, await sha256Hex(secret), namespaceForNewDevice(c));
    return fromOutcome(c, out, () => {
      annotate(c, { event: "device registered", deviceId, name: body.name });
      return c.json({ deviceId, credential: formatDeviceCredential(deviceId, secret) }, 201);
    });
  });

  app.openapi(list, async (c) => {
    const q = c.req.valid("query");
    const page = await registryStub(c.env).listDevices(q.limit, q.cursor ?? null, q.status ?? null, callerNamespace(c));
    return c.json({ devices: page.devices.map(listItem), nextCursor: page.next }, 200);
  });

  app.openapi(drain, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).setDrained(true), (v) => c.json(v, 200));
  });
  app.openapi(resume, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).setDrained(false), (v) => c.json(v, 200));
  });

  app.openapi(agentLogs, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).agentLogs(c.req.valid("query").limit), (l) => c.json(l, 200));
  });

  app.openapi(show, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    const out = await deviceStub(c.env, id).view();
    return fromOutcome(c, out, (view) => c.json(view, 200));
  });
}
