/**
 * The streaming submission channel (docs/protocol.md, "Submission channel"): a caller that
 * submits many jobs holds one WebSocket and sends each job as a message; each answer comes
 * back as a message carrying the caller's `ref`.
 *
 * Where it ends: in the Worker that accepted the upgrade (measured against the REST route in
 * docs/benchmarks.md). Each submission is replayed into this app as `POST /v1/jobs` (as the
 * JSON-RPC endpoint replays its methods), so validation, the credential and its role, the
 * namespace check, signing policy, selectors, idempotency keys, the audit trail and the body
 * limit are exactly the REST route's: the channel saves only the HTTP request per job (the
 * client's, the proxy's and the runtime's share of it). The credential is checked before the
 * upgrade and again with every message (a revoked key ends the channel).
 */
import { CHANNEL_LIMITS, ChannelErrorMessage, ChannelReady, ChannelResultMessage, ChannelSubmit, type ChannelServerMessage } from "../../protocol/channel.js";
import { makeProblem, zodErrors, type Problem } from "../../protocol/problem.js";
import { CSRF_HEADER } from "../session.js";
import { STREAM_MAX_MS } from "../stream-guard.js";
import { route } from "../route.js";
import { annotate, problem, type App, type Ctx } from "../http.js";

const channel = route({
  method: "get",
  path: "/v1/jobs/channel",
  problems: [426],
  roles: ["admin", "user"],
  summary:
    "Open the streaming submission channel: a WebSocket carrying job submissions (ChannelSubmit) and, once each, " +
    "their answers (ChannelResult or ChannelError), every submission handled as POST /v1/jobs handles it " +
    `(at most ${CHANNEL_LIMITS.maxInFlight} unanswered per connection; messages up to ${CHANNEL_LIMITS.maxMessageBytes} bytes). ` +
    "426 without Upgrade: websocket; refusals before the upgrade are problem+json",
  responses: { 101: { description: "Switching to the WebSocket protocol; the first message is ChannelReady" } },
});

const positive = (v: string | undefined, fallback: number) => {
  const n = Number(v);
  return v !== undefined && Number.isFinite(n) && n > 0 ? n : fallback;
};

/** The answer a refused submission gets: problem+json as the REST route would send it, its field paths under `job.`. */
function refusal(ref: string | null, p: Problem, underJob = false): ChannelServerMessage {
  const errors = underJob && p.errors ? p.errors.map((e) => ({ ...e, path: e.path === "(body)" ? "job" : `job.${e.path}` })) : p.errors;
  return { type: "error", ref, status: p.status, problem: { ...p, ...(errors ? { errors } : {}) } };
}

export function channelRoutes(app: App) {
  // The messages are no route's body: listed as components for clients (docs/protocol.md).
  app.openAPIRegistry.register("ChannelSubmit", ChannelSubmit);
  app.openAPIRegistry.register("ChannelReady", ChannelReady);
  app.openAPIRegistry.register("ChannelResult", ChannelResultMessage);
  app.openAPIRegistry.register("ChannelError", ChannelErrorMessage);
  app.openapi(channel, async (c) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      return problem(c, "upgrade-required", "this route opens a WebSocket: send Upgrade: websocket");
    }
    const principal = c.get("principal");
    const origin = new URL(c.req.url).origin;
    if (c.req.header("authorization") === undefined) {
      // A browser sends its cookies with a WebSocket upgrade from any page: only our own pages may use the session.
      const from = c.req.header("origin");
      if (from !== undefined && from !== origin) return problem(c, "forbidden", "the session cookie is not accepted from another origin");
    }
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    server.accept();
    annotate(c, { event: "channel opened" });

    // What each replayed submission carries of the upgrade request: the credential, nothing else.
    const base = new Headers({ "content-type": "application/json" });
    for (const h of ["authorization", "cookie"]) {
      const v = c.req.header(h);
      if (v !== undefined) base.set(h, v);
    }
    if (c.req.header("authorization") === undefined) base.set(CSRF_HEADER, "1");

    const inFlight = new Set<string>();
    let open = true;
    const send = (m: ChannelServerMessage) => {
      if (!open) return;
      try {
        server.send(JSON.stringify(m));
      } catch {
        open = false;
      }
    };
    const close = (code: number, reason: string) => {
      if (!open) return;
      open = false;
      clearTimeout(lifetime);
      try {
        server.close(code, reason);
      } catch {
        // already closing
      }
    };
    const sessionEnds = principal.role !== "device" && principal.session ? principal.session.expiresAt : Infinity;
    const endsAt = Math.min(Date.now() + positive(c.env.STREAM_MAX_MS, STREAM_MAX_MS), sessionEnds);
    const lifetime = setTimeout(() => close(1000, "the channel reached its time limit: open a new one"), Math.max(0, endsAt - Date.now()));

    const fail = (ref: string | null, type: Parameters<typeof makeProblem>[0], detail: string, errors?: Problem["errors"]) =>
      send(refusal(ref, makeProblem(type, detail, { instance: "/v1/jobs/channel", ...(errors ? { errors } : {}) })));

    async function handle(raw: string | ArrayBuffer) {
      const size = typeof raw === "string" ? raw.length : raw.byteLength;
      if (size > CHANNEL_LIMITS.maxMessageBytes) return fail(null, "too-large", `a message is limited to ${CHANNEL_LIMITS.maxMessageBytes} bytes`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw));
      } catch {
        return fail(null, "validation", "a message is one JSON object", [{ path: "(message)", message: "not JSON" }]);
      }
      const msg = ChannelSubmit.safeParse(parsed);
      const ref = typeof (parsed as { ref?: unknown })?.ref === "string" ? ((parsed as { ref: string }).ref.slice(0, CHANNEL_LIMITS.maxRefLength)) : null;
      if (!msg.success) {
        const errors = zodErrors(msg.error);
        return fail(ref, "validation", `the message is not valid: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`, errors);
      }
      const m = msg.data;
      if (inFlight.has(m.ref)) return fail(m.ref, "conflict", `a submission with ref ${m.ref} is still in flight on this channel`, [{ path: "ref", message: "in flight" }]);
      if (inFlight.size >= CHANNEL_LIMITS.maxInFlight) {
        return fail(m.ref, "too-many-in-flight", `at most ${CHANNEL_LIMITS.maxInFlight} submissions may be unanswered on one channel: wait for an answer first`);
      }
      inFlight.add(m.ref);
      try {
        const headers = new Headers(base);
        if (m.idempotencyKey !== undefined) headers.set("idempotency-key", m.idempotencyKey);
        const url = `${origin}/v1/jobs?wait=${m.wait}`;
        const res = await app.fetch(new Request(url, { method: "POST", headers, body: JSON.stringify(m.job) }), c.env, c.executionCtx);
        const body = (await res.json().catch(() => null)) as Record<string, unknown> | null;
        if (res.status === 200 || res.status === 202) {
          send({ type: "result", ref: m.ref, status: res.status, replayed: res.headers.get("idempotent-replayed") === "true", job: body ?? {} });
        } else {
          const p = (body ?? makeProblem("internal", `HTTP ${res.status}`)) as Problem;
          send(refusal(m.ref, { ...p, instance: "/v1/jobs/channel" }, res.status === 400));
          // The credential was revoked (or its session ended) since the upgrade: the channel ends with it.
          if (res.status === 401) close(1008, "the credential is no longer valid");
        }
      } catch (err) {
        fail(m.ref, "internal", `the submission failed on our side: ${String(err)}`);
      } finally {
        inFlight.delete(m.ref);
      }
    }

    server.addEventListener("message", (e) => void handle(e.data as string | ArrayBuffer));
    server.addEventListener("close", () => close(1000, "closed by the client"));
    server.addEventListener("error", () => close(1011, "socket error"));
    send({ type: "ready", maxInFlight: CHANNEL_LIMITS.maxInFlight, maxMessageBytes: CHANNEL_LIMITS.maxMessageBytes });
    return new Response(null, { status: 101, webSocket: client });
  });
}
