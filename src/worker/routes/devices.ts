import { z } from "zod";
import { DeviceId, formatDeviceCredential, newDeviceId, newSecret } from "../../protocol/ids.js";
import { DeviceDescription, DeviceRegistration, DeviceStatus, DeviceView, Health, RegistrationResult } from "../../protocol/device.js";
import { decodeListingCursor, encodeListingCursor, listingShard, mergeShardPages, type DeviceSummary, type ListingPosition } from "../../core/device-listing.js";
import { sha256Hex } from "../../core/crypto.js";
import { AgentLogLine } from "../../protocol/agent.js";
import { jsonBody, jsonResponse, route } from "../route.js";
import { annotate, type App, fromOutcome, problem } from "../http.js";
import { callerNamespace, canSeeDevice, namespaceForNewDevice } from "../tenancy.js";
import { iso } from "../../core/time.js";
import { deviceCredentialKey, deviceCredentialMac } from "../../core/device-credential.js";
import { forgetDeviceCredentials } from "../auth.js";
import { registryStub, deviceListStub, deviceStub } from "../../platform/stubs.js";
import { settingsFrom } from "../../platform/settings.js";
import type { Env } from "../../platform/env.js";

const register = route({
  method: "post",
  path: "/v1/devices/register",
  problems: [409],
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
  responses: { 201: jsonResponse(RegistrationResult, "The device id and its new credential") },
});

const DeviceListItem = DeviceView.omit({ queue: true });

const list = route({
  method: "get",
  path: "/v1/devices",
  roles: ["admin", "user"],
  summary:
    "List devices with status (current) and health and lastSeenAt as of their last publish (health.at: the listing takes health alone at most every 10 minutes; GET /v1/devices/{id} has the latest). In registration order; a global key's listing goes namespace by namespace",
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(500).default(100),
      cursor: z.string().max(400).optional().meta({ description: "nextCursor of the previous page (opaque)" }),
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
  responses: { 200: jsonResponse(DeviceView, "The device") },
});

const drain = route({
  method: "post",
  path: "/v1/devices/{id}/drain",
  roles: ["admin", "user"],
  summary: "Stop giving the device new work; jobs it runs finish",
  request: { params: z.object({ id: DeviceId }) },
  responses: { 200: jsonResponse(DeviceView, "Drained") },
});

const labels = route({
  method: "put",
  path: "/v1/devices/{id}/labels",
  roles: ["admin", "user"],
  summary: "Replace the device's labels (what selectors match on); the device listing has them at once",
  request: { params: z.object({ id: DeviceId }), body: jsonBody(z.strictObject({ labels: z.record(z.string().min(1).max(64), z.string().max(256)).refine((l) => Object.keys(l).length <= 64, "at most 64 labels") })) },
  responses: { 200: jsonResponse(DeviceView, "The device with its new labels") },
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

/** One namespace's devices after `after`: every shard's page, merged. Rows left in a shard their id no longer hashes to (the shard count changed) are skipped. */
async function namespacePage(env: Env, namespace: string, after: ListingPosition | null, status: DeviceStatus | null, limit: number) {
  const shards = settingsFrom(env).deviceListShards;
  const pages = await Promise.all(
    Array.from({ length: shards }, async (_, shard) =>
      (await deviceListStub(env, namespace, shard).page(after, status, limit + 1)).filter((r) => listingShard(r.id, shards) === shard),
    ),
  );
  return mergeShardPages(pages, limit);
}

/**
 * How many namespaces one page of a global listing may visit: each costs a request per shard,
 * and a request's subrequests are bounded. A page that stops early is short, with a cursor.
 */
const NAMESPACES_PER_PAGE = 16;

const positionOf = (r: DeviceSummary): ListingPosition => ({ namespace: r.namespace, registeredAt: r.registeredAt, id: r.id });

/** A page of the listing: one namespace (a scoped key), or all of them in order (a global key). Answers where the next page starts. */
async function listDevices(env: Env, namespace: string | null, after: ListingPosition | null, status: DeviceStatus | null, limit: number) {
  // Namespaces to visit, and one past them (which says whether anything follows). A scoped
  // listing of a namespace without devices asks no shard (and so creates none).
  const found = await registryStub(env).deviceNamespaces(namespace ?? after?.namespace ?? null, namespace !== null ? 1 : NAMESPACES_PER_PAGE + 1);
  const namespaces = found.filter((n) => namespace === null || n === namespace);
  const rows: DeviceSummary[] = [];
  for (const [i, ns] of namespaces.slice(0, NAMESPACES_PER_PAGE).entries()) {
    const page = await namespacePage(env, ns, after?.namespace === ns ? after : null, status, limit - rows.length);
    rows.push(...page.rows);
    const following = namespaces[i + 1];
    if (page.more) return { rows, next: positionOf(rows.at(-1)!) };
    if (rows.length === limit) return { rows, next: following ? positionOf(rows.at(-1)!) : null };
    // Out of namespaces for this page: the next one starts at the beginning of the following namespace.
    if (i === NAMESPACES_PER_PAGE - 1 && following) return { rows, next: { namespace: following, registeredAt: -1, id: "" } };
  }
  return { rows, next: null };
}

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
    const after = q.cursor ? decodeListingCursor(q.cursor) : null;
    if (q.cursor && !after) return problem(c, "validation", "the cursor is not one this API handed out");
    const scope = callerNamespace(c);
    if (after && scope !== null && after.namespace !== scope) return problem(c, "validation", "the cursor is not one this API handed out");
    const page = await listDevices(c.env, scope, after, q.status ?? null, q.limit);
    return c.json({ devices: page.rows.map(listItem), nextCursor: page.next ? encodeListingCursor(page.next) : null }, 200);
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

  app.openapi(labels, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).setLabels(callerNamespace(c), c.req.valid("json").labels), (v) => c.json(v, 200));
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
