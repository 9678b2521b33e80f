/** The routes a device agent calls with its device credential; each acts only on that device's object. */
import { z } from "zod";
import { Ack, AgentSessionOpened, Delivery, EPOCH_HEADER, EpochHeaders, Heartbeat, LogBatch, PollQuery, ResultBatch, ResultBatchResponse } from "../../protocol/agent.js";
import { jsonBody, jsonResponse, route } from "../route.js";
import { fromOutcome, problem, type App, type Ctx } from "../http.js";
import { DEVICE_SECRET_HEADER } from "../../durable/device-object.js";
import { devicePrincipal } from "../auth.js";
import { deviceStub } from "../../platform/stubs.js";

const openSession = route({
  method: "post",
  path: "/v1/agent/session",
  roles: ["device"],
  summary: "Open an agent session: answers its epoch (one higher than any before); older sessions of this device are refused from now on (fencing)",
  responses: { 200: jsonResponse(AgentSessionOpened, "The new session's epoch; send it as x-wasmvisor-epoch on every agent request") },
});

const poll = route({
  method: "get",
  path: "/v1/agent/jobs",
  roles: ["device"],
  summary: "Long-poll for leased jobs (answers as soon as work is ready, or empty after ?wait= seconds)",
  problems: [409],
  request: { query: PollQuery, headers: EpochHeaders },
  responses: { 200: jsonResponse(Delivery, "Leased jobs, possibly none") },
});

const ack = route({
  method: "post",
  path: "/v1/agent/acks",
  roles: ["device"],
  summary: "Say which delivered jobs have started, and which are held but not started (extends their leases)",
  problems: [409],
  request: { headers: EpochHeaders, body: jsonBody(Ack) },
  responses: { 200: jsonResponse(z.object({ started: z.number().int(), held: z.number().int() }), "How many leases were extended") },
});

const results = route({
  method: "post",
  path: "/v1/agent/results",
  roles: ["device"],
  summary: "Report results, quoting lease tokens; duplicates and stale reports change nothing",
  problems: [409],
  request: { headers: EpochHeaders, body: jsonBody(ResultBatch) },
  responses: { 200: jsonResponse(ResultBatchResponse, "What became of each report") },
});

const logs = route({
  method: "post",
  path: "/v1/agent/logs",
  roles: ["device"],
  summary: "Output lines of a running job (the long-poll transport's way; over the WebSocket they are messages)",
  problems: [409],
  request: { headers: EpochHeaders, body: jsonBody(LogBatch) },
  responses: { 200: jsonResponse(z.object({ accepted: z.number().int() }), "How many lines were kept") },
});

const heartbeat = route({
  method: "post",
  path: "/v1/agent/heartbeat",
  roles: ["device"],
  summary: "Report health; answers the running jobs the agent should stop",
  problems: [409],
  request: { headers: EpochHeaders, body: jsonBody(Heartbeat) },
  responses: { 200: jsonResponse(z.object({ serverTime: z.number(), cancel: z.array(z.string()) }), "Acknowledged") },
});

const connect = route({
  method: "get",
  path: "/v1/agent/ws",
  problems: [409, 426],
  roles: ["device"],
  summary: "Open the push transport: a WebSocket to the device's object (jobs pushed, results and health as messages); 409 when the session's epoch was taken over",
  request: { headers: EpochHeaders },
  responses: { 101: { description: "Switching to the WebSocket protocol" } },
});

const caller = (c: Ctx) => {
  const p = devicePrincipal(c.get("principal"))!;
  // The session's epoch (fencing); validated by each route's header schema.
  return { stub: deviceStub(c.env, p.deviceId), secret: p.secret, epoch: Number(c.req.header(EPOCH_HEADER) ?? 0) };
};

export function agentRoutes(app: App) {
  app.openapi(openSession, async (c) => {
    const { stub, secret } = caller(c);
    return fromOutcome(c, await stub.openSession(secret), (s) => c.json(s, 200));
  });
  app.openapi(connect, async (c) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      return problem(c, "upgrade-required", "this route opens a WebSocket: send Upgrade: websocket");
    }
    const { stub, secret } = caller(c);
    const headers = new Headers(c.req.raw.headers);
    headers.set(DEVICE_SECRET_HEADER, secret);
    return stub.fetch(new Request(c.req.url, { headers }));
  });
  app.openapi(poll, async (c) => {
    const { stub, secret, epoch } = caller(c);
    const q = c.req.valid("query");
    return fromOutcome(c, await stub.poll(secret, q.wait * 1000, q.max, epoch), (d) => c.json(d, 200));
  });
  app.openapi(ack, async (c) => {
    const { stub, secret, epoch } = caller(c);
    const body = c.req.valid("json");
    return fromOutcome(c, await stub.ack(secret, body.started, body.held, epoch), (r) => c.json(r, 200));
  });
  app.openapi(results, async (c) => {
    const { stub, secret, epoch } = caller(c);
    return fromOutcome(c, await stub.report(secret, c.req.valid("json").results, epoch), (dispositions) => c.json({ dispositions }, 200));
  });
  app.openapi(logs, async (c) => {
    const { stub, secret, epoch } = caller(c);
    return fromOutcome(c, await stub.postLogs(secret, c.req.valid("json"), epoch), (r) => c.json(r, 200));
  });
  app.openapi(heartbeat, async (c) => {
    const { stub, secret, epoch } = caller(c);
    return fromOutcome(c, await stub.heartbeat(secret, c.req.valid("json"), epoch), (r) => c.json(r, 200));
  });
}
