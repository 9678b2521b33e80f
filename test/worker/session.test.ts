/** Dashboard sessions: an API key becomes an HttpOnly cookie; revoking the key or logging out ends it. */
import { describe, expect, it } from "vitest";
import { SELF } from "cloudflare:test";
import { ADMIN, call } from "./helpers.js";

const cookieOf = (res: { headers: Headers }) => res.headers.get("set-cookie")!.split(";")[0]!;

describe("POST /v1/session", () => {
  it("sets an HttpOnly, SameSite=Strict, Secure (over https) cookie holding a token, never the key", async () => {
    const key = (await call("POST", "/v1/keys", { json: { role: "user", namespace: "sess" } })).body;
    const login = await call("POST", "/v1/session", { token: key.key });
    expect(login.status).toBe(201);
    expect(login.body).toMatchObject({ role: "user", namespace: "sess", keyId: key.id });
    const setCookie = login.headers.get("set-cookie")!;
    expect(setCookie).toMatch(/^__Host-wasmvisor_session=[\w-]+\.[\w-]+\.[\w-]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=3600; Secure$/);
    expect(setCookie).not.toContain(key.key.split(".")[2]);
    expect(JSON.stringify(login.body)).not.toContain(key.key);
    expect(login.headers.get("cache-control")).toBe("no-store");

    const cookie = cookieOf(login);
    const me = await call("GET", "/v1/session", { token: null, headersExtra: { cookie } });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ role: "user", namespace: "sess", keyId: key.id });
    expect(Date.parse(me.body.expiresAt) - Date.now()).toBeGreaterThan(3500_000);
    // the session sees what the key sees: its namespace's devices only
    expect((await call("GET", "/v1/devices", { token: null, headersExtra: { cookie } })).status).toBe(200);
    expect((await call("GET", "/v1/events?wait=0&namespace=default", { token: null, headersExtra: { cookie } })).status).toBe(403);

    // a session cannot log in again (it would never expire), register keys cannot log in
    expect((await call("POST", "/v1/session", { token: null, headersExtra: { cookie, "x-wasmvisor-csrf": "1" } })).status).toBe(403);
    const register = (await call("POST", "/v1/keys", { json: { role: "register" } })).body.key;
    expect((await call("POST", "/v1/session", { token: register })).status).toBe(403);
  });

  it("ends with the key's revocation, and logout clears the cookie", async () => {
    const key = (await call("POST", "/v1/keys", { json: { role: "admin" } })).body;
    const cookie = cookieOf(await call("POST", "/v1/session", { token: key.key }));
    // changing something with the cookie takes the CSRF header
    expect((await call("POST", "/v1/keys", { token: null, json: { role: "user" }, headersExtra: { cookie } })).status).toBe(403);
    const made = await call("POST", "/v1/keys", { token: null, json: { role: "user" }, headersExtra: { cookie, "x-wasmvisor-csrf": "1" } });
    expect(made.status).toBe(201);
    expect((await call("DELETE", `/v1/keys/${key.id}`)).status).toBe(200);
    expect((await call("GET", "/v1/session", { token: null, headersExtra: { cookie } })).status).toBe(401);

    const other = (await call("POST", "/v1/keys", { json: { role: "admin" } })).body;
    const second = cookieOf(await call("POST", "/v1/session", { token: other.key }));
    const out = await call("DELETE", "/v1/session", { token: null, headersExtra: { cookie: second, "x-wasmvisor-csrf": "1" } });
    expect(out.status).toBe(200);
    expect(out.headers.get("set-cookie")).toMatch(/^__Host-wasmvisor_session=; Path=\/; HttpOnly; SameSite=Strict; Max-Age=0/);
  });

  it("the bootstrap admin token logs in too", async () => {
    const login = await call("POST", "/v1/session");
    expect(login.status).toBe(201);
    expect((await call("GET", "/v1/keys", { token: null, headersExtra: { cookie: cookieOf(login) } })).status).toBe(200);
  });

  it("a bootstrap session's token carries no unkeyed hash of ADMIN_TOKEN (no offline guessing oracle)", async () => {
    const jwt = cookieOf(await call("POST", "/v1/session")).split("=")[1]!;
    const claims = JSON.parse(atob(jwt.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/"))) as { adm: string };
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`session:${ADMIN}`)));
    const unkeyed = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 32);
    expect(claims.adm).toMatch(/^[0-9a-f]{32}$/);
    expect(claims.adm).not.toBe(unkeyed);
  });

  it("logout revokes the session on the server: a copied cookie gets 401 at once on every route, and its open stream ends", async () => {
    const key = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: "logout-ns" } })).body;
    const cookie = cookieOf(await call("POST", "/v1/session", { token: key.key }));
    const other = cookieOf(await call("POST", "/v1/session", { token: key.key })); // a second session of the same key
    expect((await call("GET", "/v1/devices", { token: null, headersExtra: { cookie } })).status).toBe(200);
    const stream = await SELF.fetch("https://wasmvisor.test/v1/events", { headers: { cookie } });
    expect(stream.status).toBe(200);

    // The page logs out; an attacker kept a copy of the cookie.
    expect((await call("DELETE", "/v1/session", { token: null, headersExtra: { cookie, "x-wasmvisor-csrf": "1" } })).status).toBe(200);
    expect((await call("GET", "/v1/session", { token: null, headersExtra: { cookie } })).status).toBe(401);
    expect((await call("GET", "/v1/devices", { token: null, headersExtra: { cookie } })).status).toBe(401);
    expect((await call("GET", "/v1/events?wait=0", { token: null, headersExtra: { cookie } })).status).toBe(401);
    expect((await call("POST", "/v1/keys", { token: null, json: { role: "user" }, headersExtra: { cookie, "x-wasmvisor-csrf": "1" } })).status).toBe(401);
    expect((await call("DELETE", "/v1/session", { token: null, headersExtra: { cookie, "x-wasmvisor-csrf": "1" } })).status).toBe(401);
    // the stream it had open ends, saying why
    expect(await stream.text()).toMatch(/^: the (session was logged out|credential is no longer valid): reconnect/m);
    // only that session: the key and its other session still work
    expect((await call("GET", "/v1/devices", { token: null, headersExtra: { cookie: other } })).status).toBe(200);
    expect((await call("GET", "/v1/devices", { token: key.key })).status).toBe(200);
  });

  it("the cookie is __Host- and Secure over https and on loopback http; unprefixed without Secure only over plain http to another host", async () => {
    const key = (await call("POST", "/v1/keys", { json: { role: "user" } })).body.key as string;
    const login = (origin: string) => SELF.fetch(`${origin}/v1/session`, { method: "POST", headers: { authorization: `Bearer ${key}` } });
    for (const origin of ["http://localhost:8787", "http://127.0.0.1:8787", "http://[::1]:8787"]) {
      const res = await login(origin);
      expect(res.status).toBe(201);
      expect(res.headers.get("set-cookie")).toMatch(/^__Host-wasmvisor_session=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=3600; Secure$/);
    }
    const lan = await login("http://192.0.2.10:8787");
    expect(lan.headers.get("set-cookie")).toMatch(/^wasmvisor_session=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=3600$/);
    const token = lan.headers.get("set-cookie")!.split(";")[0]!.split("=")[1]!;
    const me = (origin: string, cookie: string) => SELF.fetch(`${origin}/v1/session`, { headers: { cookie } });
    expect((await me("http://192.0.2.10:8787", `wasmvisor_session=${token}`)).status).toBe(200);
    // over https (and loopback) only the prefixed cookie counts: an unprefixed one may have been planted by a sibling domain or a plain-http page
    expect((await me("https://wasmvisor.test", `wasmvisor_session=${token}`)).status).toBe(401);
    expect((await me("http://localhost:8787", `wasmvisor_session=${token}`)).status).toBe(401);
    expect((await me("https://wasmvisor.test", `wasmvisor_session=junk; __Host-wasmvisor_session=${token}`)).status).toBe(200);
  });
});
