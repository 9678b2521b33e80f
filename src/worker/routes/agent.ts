/** The routes a device agent calls with its device credential; each acts only on that device's object. */
import { z } from "zod";
import { Ack, Delivery, Heartbeat, LogBatch, PollQuery, ResultBatch, ResultBatchResponse } from "../../protocol/agent.js";
import { jsonBody, jsonResponse, route } from "../route.js";
import { fromOutcome, problem, type App, type Ctx } from "../http.js";
import { DEVICE_SECRET_HEADER } from "../../durable/device-object.js";
import { devicePrincipal } from "../auth.js";
import { deviceStub } from "../../platform/stubs.js";

const poll = route({
  method: "get",
  path: "/v1/agent/jobs",
  roles: ["device"],
  summary: "Long-poll for leased jobs (answers as soon as work is ready, or empty after ?wait= seconds)",
  request: { query: PollQuery },
  responses: { 200: jsonResponse(Delivery, "Leased jobs, possibly none") },
});

const ack = route({
  method: "post",
  path: "/v1/agent/acks",
  roles: ["device"],
  summary: "Say which delivered jobs have started, and which are held but not started (extends their leases)",
  request: { body: jsonBody(Ack) },
  responses: { 200: jsonResponse(z.object({ started: z.number().int(), held: z.number().int() }), "How many leases were extended") },
});

const results = route({
  method: "post",
  path: "/v1/agent/results",
  roles: ["device"],
  summary: "Report results, quoting lease tokens; duplicates and stale reports change nothing",
  request: { body: jsonBody(ResultBatch) },
  responses: { 200: jsonResponse(ResultBatchResponse, "What became of each report") },
});

const logs = route({
  method: "post",
  path: "/v1/agent/logs",
  roles: ["device"],
  summary: "Output lines of a running job (the long-poll transport's way; over the WebSocket they are messages)",
  request: { body: jsonBody(LogBatch) },
  responses: { 200: jsonResponse(z.object({ accepted: z.number().int() }), "How many lines were kept") },
});

const heartbeat = route({
  method: "post",
  path: "/v1/agent/heartbeat",
  roles: ["device"],
  summary: "Report health; answers the running jobs the agent should stop",
  request: { body: jsonBody(Heartbeat) },
  responses: { 200: jsonResponse(z.object({ serverTime: z.number(), cancel: z.array(z.string()) }), "Acknowledged") },
});

const connect = route({
  method: "get",
  path: "/v1/agent/ws",
  problems: [426],
  roles: ["device"],
  summary: "Open the push transport: a WebSocket to the device's object (jobs pushed, results and health as messages)",
  responses: { 101: { description: "Switching to the WebSocket protocol" } },
});

const caller = (c: Ctx) => {
  const p = devicePrincipal(c.get("principal"))!;
  return { stub: deviceStub(c.env, p.deviceId), secret: p.secret };
};

export function agentRoutes(app: App) {
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
    const { stub, secret } = caller(c);
    const q = c.req.valid("query");
    return fromOutcome(c, await stub.poll(secret, q.wait * 1000, q.max), (d) => c.json(d, 200));
  });
  app.openapi(ack, async (c) => {
    const { stub, secret } = caller(c);
    const body = c.req.valid("json");
    return fromOutcome(c, await stub.ack(secret, body.started, body.held), (r) => c.json(r, 200));
  });
  app.openapi(results, async (c) => {
    const { stub, secret } = caller(c);
    return fromOutcome(c, await stub.report(secret, c.req.valid("json").results), (dispositions) => c.json({ dispositions }, 200));
  });
  app.openapi(logs, async (c) => {
    const { stub, secret } = caller(c);
    return fromOutcome(c, await stub.postLogs(secret, c.req.valid("json")), (r) => c.json(r, 200));
  });
  app.openapi(heartbeat, async (c) => {
    const { stub, secret } = caller(c);
    return fromOutcome(c, await stub.heartbeat(secret, c.req.valid("json")), (r) => c.json(r, 200));
  });
}
