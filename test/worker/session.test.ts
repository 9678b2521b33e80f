/** Dashboard sessions: an API key becomes an HttpOnly cookie; revoking the key or logging out ends it. */
import { describe, expect, it } from "vitest";
import { ADMIN, call } from "./helpers.js";

const cookieOf = (res: { headers: Headers }) => res.headers.get("set-cookie")!.split(";")[0]!;

describe("POST /v1/session", () => {
  it("sets an HttpOnly, SameSite=Strict, Secure (over https) cookie holding a token, never the key", async () => {
    const key = (await call("POST", "/v1/keys", { json: { role: "user", namespace: "sess" } })).body;
    const login = await call("POST", "/v1/session", { token: key.key });
    expect(login.status).toBe(201);
    expect(login.body).toMatchObject({ role: "user", namespace: "sess", keyId: key.id });
    const setCookie = login.headers.get("set-cookie")!;
    expect(setCookie).toMatch(/^wasmvisor_session=[\w-]+\.[\w-]+\.[\w-]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=3600; Secure$/);
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
    const out = await call("DELETE", "/v1/session", { token: null, headersExtra: { cookie, "x-wasmvisor-csrf": "1" } });
    expect(out.status).toBe(200);
    expect(out.headers.get("set-cookie")).toMatch(/^wasmvisor_session=; Path=\/; HttpOnly; SameSite=Strict; Max-Age=0/);
    // changing something with the cookie takes the CSRF header
    expect((await call("POST", "/v1/keys", { token: null, json: { role: "user" }, headersExtra: { cookie } })).status).toBe(403);
    const made = await call("POST", "/v1/keys", { token: null, json: { role: "user" }, headersExtra: { cookie, "x-wasmvisor-csrf": "1" } });
    expect(made.status).toBe(201);
    expect((await call("DELETE", `/v1/keys/${key.id}`)).status).toBe(200);
    expect((await call("GET", "/v1/session", { token: null, headersExtra: { cookie } })).status).toBe(401);
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
});
