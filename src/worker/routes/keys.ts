import { z } from "zod";
import { KeyCreate, KeyCreated, KeyView } from "../../protocol/keys.js";
import { forgetApiKeys } from "../auth.js";
import { jsonBody, jsonResponse as json, route } from "../route.js";
import { annotate, type App, fromOutcome, problem } from "../http.js";
import { callerNamespace } from "../tenancy.js";
import { registryStub } from "../../platform/stubs.js";

const createKey = route({
  method: "post",
  path: "/v1/keys",
  roles: ["admin"],
  summary: "Create an API key (the secret is shown once)",
  request: { body: jsonBody(KeyCreate) },
  responses: { 201: json(KeyCreated, "The new key, with its secret") },
});

const listKeys = route({
  method: "get",
  path: "/v1/keys",
  roles: ["admin"],
  summary: "List API keys (never their secrets)",
  responses: { 200: json(z.object({ keys: z.array(KeyView) }), "The keys") },
});

const revokeKey = route({
  method: "delete",
  path: "/v1/keys/{id}",
  roles: ["admin"],
  summary: "Revoke an API key",
  request: { params: z.object({ id: z.string().max(64) }) },
  responses: { 200: json(KeyView, "The revoked key") },
});

export function keyRoutes(app: App) {
  app.openapi(createKey, async (c) => {
    const body = c.req.valid("json");
    const scope = callerNamespace(c);
    // A namespace's admin makes keys for its own namespace only.
    if (scope !== null && body.namespace !== undefined && body.namespace !== scope) {
      return problem(c, "forbidden", `this key may only create keys in namespace ${scope}`);
    }
    const key = await registryStub(c.env).createKey(body.role, body.label ?? null, scope ?? body.namespace ?? null);
    annotate(c, { event: "key created", keyId: key.id, role: key.role });
    return c.json(key, 201);
  });
  app.openapi(listKeys, async (c) => c.json({ keys: await registryStub(c.env).listKeys(callerNamespace(c)) }, 200));
  app.openapi(revokeKey, async (c) => {
    const out = await registryStub(c.env).revokeKey(c.req.valid("param").id, callerNamespace(c));
    if (out.ok) forgetApiKeys();
    return fromOutcome(c, out, (key) => c.json(key, 200));
  });
}
