/**
 * Bounded commands (docs/protocol.md): the agent's answers to the commands its device object sent,
 * and each command's outcome as operators see it.
 */
import { z } from "zod";
import { CommandAcks, CommandView, EPOCH_HEADER, EpochHeaders } from "../../protocol/agent.js";
import { DeviceId } from "../../protocol/ids.js";
import { jsonBody, jsonResponse, route } from "../route.js";
import { fromOutcome, problem, type App } from "../http.js";
import { devicePrincipal } from "../auth.js";
import { callerNamespace, canSeeDevice } from "../tenancy.js";
import { deviceStub } from "../../platform/stubs.js";

const acks = route({
  method: "post",
  path: "/v1/agent/commands/acks",
  problems: [409],
  roles: ["device"],
  summary: "Answer commands: acked (applied), nacked (refused, with a reason) or expired (arrived too late, discarded)",
  request: { headers: EpochHeaders, body: jsonBody(CommandAcks) },
  responses: { 200: jsonResponse(z.object({ recorded: z.number().int() }), "How many answers were recorded (answers to decided or unknown commands change nothing)") },
});

const list = route({
  method: "get",
  path: "/v1/devices/{id}/commands",
  roles: ["admin", "user"],
  summary: "The commands sent to the device's agent, newest first: id, kind, expiry and outcome (sent, acked, nacked, expired, unanswered)",
  request: { params: z.object({ id: DeviceId }), query: z.object({ limit: z.coerce.number().int().min(1).max(500).default(100) }) },
  responses: { 200: jsonResponse(z.object({ commands: z.array(CommandView) }), "Newest first") },
});

export function commandRoutes(app: App) {
  app.openapi(acks, async (c) => {
    const p = devicePrincipal(c.get("principal"))!;
    const epoch = Number(c.req.header(EPOCH_HEADER) ?? 0);
    return fromOutcome(c, await deviceStub(c.env, p.deviceId).commandAcks(p.secret, c.req.valid("json").acks, epoch), (r) => c.json(r, 200));
  });
  app.openapi(list, async (c) => {
    const id = c.req.valid("param").id;
    if (!(await canSeeDevice(c, id))) return problem(c, "not-found", "no such device");
    return fromOutcome(c, await deviceStub(c.env, id).commands(callerNamespace(c), c.req.valid("query").limit), (r) => c.json(r, 200));
  });
}
