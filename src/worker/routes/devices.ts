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
import { deviceCredentialKey, deviceCredentialMac } from "../../core/device-credential.js";
import { forgetDeviceCredentials } from "../auth.js";
import type { Env } from "../env.js";

const register = route({
  method: "post",
  path: "/v1/devices/register",
  roles: ["register", "admin"],
  summary: "Register a device; answers its credential once",
  request: { body: jsonBody(DeviceRegistration) },
  responses: { 201: jsonResponse(RegistrationResult, "The device id and its credential (stored hashed)") },
});

const rotate = route({
  method: "post",
  path: "/v1/devices/{id}/credential",
  roles: ["admin", "user"],
  summary: "Issue the device a new credential (answered once); the old one stops working at once (its agent must be given the new one)",
  request: { params: z.object({ id: DeviceId }) },
  responses: { 201: jsonResponse(RegistrationResult, "The device id and its new credential"), 404: jsonResponse(z.unknown(), "No such device") },
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

/** A new credential for `deviceId`: the secret (its hash is what the device's object stores) and the credential with its MAC. */
async function newDeviceCredential(env: Env, deviceId: string): Promise<{ hash: string; credential: string } | null> {
  const key = deviceCredentialKey(env.DEVICE_CREDENTIAL_KEY);
  if (!key) return null;
  const secret = newSecret();
  return { hash: await sha256Hex(secret), credential: formatDeviceCredential(deviceId, secret, await deviceCredentialMac(await key, deviceId, secret)) };
}

const NO_KEY = "device credentials cannot be issued: the control plane's DEVICE_CREDENTIAL_KEY is not set (at least 32 characters: wrangler secret put DEVICE_CREDENTIAL_KEY)";

export function deviceRoutes(app: App) {
  app.openapi(register, async (c) => {
    const body = c.req.valid("json");
    const deviceId = newDeviceId();
    const issued = await newDeviceCredential(c.env, deviceId);
    if (!issued) return problem(c, "not-configured", NO_KEY);
    const out = await deviceStub(c.env, deviceId).register(deviceId, body.name ?? null, body.description, issued.hash, namespaceForNewDevice(c));
    return fromOutcome(c, out, () => {
      annotate(c, { event: "device registered", deviceId, name: body.name });
      return c.json({ deviceId, credential: issued.credential }, 201);
    });
  });

  app.openapi(rotate, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    const issued = await newDeviceCredential(c.env, id);
    if (!issued) return problem(c, "not-configured", NO_KEY);
    const out = await deviceStub(c.env, id).rotateCredential(callerNamespace(c), issued.hash);
    forgetDeviceCredentials();
    return fromOutcome(c, out, () => {
      annotate(c, { event: "device credential rotated", deviceId: id });
      return c.json({ deviceId: id, credential: issued.credential }, 201);
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
    return fromOutcome(c, await deviceStub(c.env, id).setDrained(callerNamespace(c), true), (v) => c.json(v, 200));
  });
  app.openapi(resume, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).setDrained(callerNamespace(c), false), (v) => c.json(v, 200));
  });

  app.openapi(agentLogs, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).agentLogs(callerNamespace(c), c.req.valid("query").limit), (l) => c.json(l, 200));
  });

  app.openapi(show, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    const out = await deviceStub(c.env, id).view(callerNamespace(c));
    return fromOutcome(c, out, (view) => c.json(view, 200));
  });
}
