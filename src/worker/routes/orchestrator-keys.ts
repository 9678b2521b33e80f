/** The registry of orchestrator public keys that sign jobs (and, later, deployments). */
import { z } from "zod";
import type { JWK } from "jose";
import { OrchestratorKeyCreate, OrchestratorKeyView } from "../../protocol/signing.js";
import { jsonBody, jsonResponse, route } from "../route.js";
import { annotate, type App, fromOutcome, problem } from "../http.js";
import { callerNamespace } from "../tenancy.js";
import { describePublicJwk, forgetOrchestratorKey } from "../signing.js";
import { registryStub } from "../../platform/stubs.js";

const add = route({
  method: "post",
  path: "/v1/orchestrator-keys",
  problems: [409],
  roles: ["admin"],
  summary: "Register an orchestrator's public key (JWK, Ed25519 or P-256); its kid is the JWK's own or its thumbprint",
  request: { body: jsonBody(OrchestratorKeyCreate) },
  responses: { 201: jsonResponse(OrchestratorKeyView, "Registered") },
});

const list = route({
  method: "get",
  path: "/v1/orchestrator-keys",
  roles: ["admin"],
  summary: "List orchestrator keys",
  responses: { 200: jsonResponse(z.object({ keys: z.array(OrchestratorKeyView) }), "The keys") },
});

const revoke = route({
  method: "delete",
  path: "/v1/orchestrator-keys/{kid}",
  roles: ["admin"],
  summary: "Revoke an orchestrator key: what it signs is refused from then on",
  request: { params: z.object({ kid: z.string().min(1).max(200) }) },
  responses: { 200: jsonResponse(OrchestratorKeyView, "Revoked") },
});

export function orchestratorKeyRoutes(app: App) {
  app.openapi(add, async (c) => {
    const body = c.req.valid("json");
    const scope = callerNamespace(c);
    if (scope !== null && body.namespace !== undefined && body.namespace !== scope) return problem(c, "forbidden", `this key may only register keys for namespace ${scope}`);
    const described = await describePublicJwk(body.jwk as JWK);
    if (!described) return problem(c, "validation", "the JWK is not a usable Ed25519 or P-256 public key");
    const { kty, crv, x, y } = body.jwk as { kty: string; crv: string; x: string; y?: string };
    const publicJwk = { kty, crv, x, ...(y ? { y } : {}) };
    const out = await registryStub(c.env).addOrchestratorKey(described.kid, described.alg, JSON.stringify(publicJwk), body.label ?? null, scope ?? body.namespace ?? null);
    return fromOutcome(c, out, (key) => {
      annotate(c, { event: "orchestrator key registered", kid: key.kid, alg: key.alg });
      return c.json(key, 201);
    });
  });
  app.openapi(list, async (c) => c.json({ keys: await registryStub(c.env).listOrchestratorKeys(callerNamespace(c)) }, 200));
  app.openapi(revoke, async (c) => {
    const { kid } = c.req.valid("param");
    const out = await registryStub(c.env).revokeOrchestratorKey(kid, callerNamespace(c));
    forgetOrchestratorKey(kid);
    return fromOutcome(c, out, (k) => c.json(k, 200));
  });
}
