/**
 * Dashboard login: an API key, sent once, becomes an HttpOnly session cookie (see
 * ../session.ts); the page never stores the key. Logout revokes the session on the server
 * (a copy of the cookie stops working at once) and clears the cookie.
 */
import { z } from "zod";
import { jsonResponse as json, route } from "../route.js";
import { annotate, type App, problem } from "../http.js";
import { issueSession, revokeSession, sessionSetCookie, SESSION_TTL_SECONDS } from "../session.js";

const SessionView = z
  .object({
    role: z.string(),
    namespace: z.string().nullable(),
    keyId: z.string(),
    expiresAt: z.string().nullable().describe("when the session cookie stops working (null: a Bearer credential, not a session)"),
  })
  .meta({ id: "Session" });

const login = route({
  method: "post",
  path: "/v1/session",
  roles: ["admin", "user"],
  problems: [503],
  summary:
    "Log in to the dashboard: send the API key once as Authorization: Bearer; the answer sets an HttpOnly, SameSite=Strict session cookie (`__Host-` and Secure over https and on loopback hosts) good for an hour until logout. Requests made with the cookie that change something must send X-Wasmvisor-CSRF: 1",
  responses: {
    201: { ...json(SessionView, "The session; its token is in the Set-Cookie header only"), headers: z.object({ "set-cookie": z.string() }) },
  },
});

const whoami = route({
  method: "get",
  path: "/v1/session",
  roles: ["admin", "user"],
  summary: "Who the caller is (the dashboard asks whether its session is still good)",
  responses: { 200: json(SessionView, "The caller") },
});

const logout = route({
  method: "delete",
  path: "/v1/session",
  roles: ["admin", "user"],
  summary: "Log out: the session (when the caller is one) is revoked on the server at once, its open event streams end, and the cookie is cleared",
  responses: { 200: { ...json(z.object({ loggedOut: z.literal(true) }), "The session is revoked and the cookie cleared"), headers: z.object({ "set-cookie": z.string() }) } },
});

export function sessionRoutes(app: App) {
  app.openapi(login, async (c) => {
    const p = c.get("principal");
    if (p.role === "device") return problem(c, "forbidden", "devices do not log in");
    // A session does not renew itself: logging in takes the key.
    if (p.session) return problem(c, "forbidden", "log in with an API key (Authorization: Bearer), not with a session");
    const issued = await issueSession(c.env, p, Date.now());
    if (!issued) return problem(c, "not-configured", "sessions cannot be signed: set SESSION_KEY (or DEVICE_CREDENTIAL_KEY), 32+ characters");
    annotate(c, { event: "session started", keyId: p.keyId });
    c.header("set-cookie", sessionSetCookie(issued.token, SESSION_TTL_SECONDS, c.req.url));
    c.header("cache-control", "no-store");
    return c.json({ role: p.role, namespace: p.namespace, keyId: p.keyId, expiresAt: new Date(issued.expiresAt).toISOString() }, 201);
  });
  app.openapi(whoami, async (c) => {
    const p = c.get("principal");
    if (p.role === "device") return problem(c, "forbidden", "devices have no session");
    return c.json({ role: p.role, namespace: p.namespace, keyId: p.keyId, expiresAt: p.session ? new Date(p.session.expiresAt).toISOString() : null }, 200);
  });
  app.openapi(logout, async (c) => {
    const p = c.get("principal");
    if (p.role !== "device" && p.session) {
      await revokeSession(c.env, p.session.id, p.session.expiresAt);
      annotate(c, { event: "session revoked", keyId: p.keyId });
    }
    c.header("set-cookie", sessionSetCookie("", 0, c.req.url));
    return c.json({ loggedOut: true as const }, 200);
  });
}
