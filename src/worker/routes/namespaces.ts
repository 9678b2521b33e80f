/** Per-namespace settings: for now, whether its jobs must be signed. */
import { z } from "zod";
import { Namespace } from "../../protocol/keys.js";
import { NamespaceSettings, NamespaceSettingsInput, withRetentionDefaults } from "../../protocol/signing.js";
import { jsonBody, jsonResponse, route } from "../route.js";
import { problem, type App, type Ctx } from "../http.js";
import { callerNamespace } from "../tenancy.js";
import { forgetNamespaceSettings } from "../signing.js";
import { registryStub } from "../../platform/stubs.js";

const params = z.object({ ns: Namespace });

const get = route({
  method: "get",
  path: "/v1/namespaces/{ns}/settings",
  roles: ["admin"],
  summary: "A namespace's settings",
  request: { params },
  responses: { 200: jsonResponse(NamespaceSettings, "The settings") },
});

const put = route({
  method: "put",
  path: "/v1/namespaces/{ns}/settings",
  roles: ["admin"],
  summary:
    "Change a namespace's settings (requireSignedJobs: unsigned submissions are refused with 403; retention: how long ended jobs " +
    "with their logs, files and index rows, and Idempotency-Keys, are kept; omitted retention settings take their defaults)",
  request: { params, body: jsonBody(NamespaceSettingsInput) },
  responses: { 200: jsonResponse(NamespaceSettings, "The settings now") },
});

const outside = (c: Ctx, ns: string) => {
  const scope = callerNamespace(c);
  return scope !== null && scope !== ns;
};

export function namespaceRoutes(app: App) {
  app.openapi(get, async (c) => {
    const { ns } = c.req.valid("param");
    if (outside(c, ns)) return problem(c, "not-found", `no namespace ${ns}`);
    return c.json(await registryStub(c.env).namespaceSettings(ns), 200);
  });
  app.openapi(put, async (c) => {
    const { ns } = c.req.valid("param");
    if (outside(c, ns)) return problem(c, "not-found", `no namespace ${ns}`);
    const input = c.req.valid("json");
    const settings = await registryStub(c.env).setNamespaceSettings(ns, { requireSignedJobs: input.requireSignedJobs, retention: withRetentionDefaults(input.retention) });
    forgetNamespaceSettings(ns);
    return c.json(settings, 200);
  });
}
