/** Staged rollouts of a new deployment version to a selector: start, read (every decision), pause/resume/abort/rollback. */
import { z } from "zod";
import { DeploymentManifest } from "../../protocol/deployment.js";
import { DEFAULT_NAMESPACE } from "../../protocol/keys.js";
import { RolloutAction, RolloutId, RolloutRequest, RolloutState, RolloutView } from "../../protocol/rollout.js";
import { MAX_REASONS_SHOWN } from "../../protocol/selector.js";
import { explainMisses, select } from "../../core/selector.js";
import { jsonBody, jsonResponse, route } from "../route.js";
import { annotate, type App, type Ctx, fromOutcome, problem } from "../http.js";
import { callerNamespace } from "../tenancy.js";
import { verifySignedClaim } from "../signing.js";
import { resolveVersion } from "../deploy.js";
import { fleetCandidates, withInterfaces } from "../../durable/fleet.js";
import type { RolloutConfig } from "../../durable/rollout-object.js";
import { registryStub, rolloutStub } from "../../platform/stubs.js";

/** Targets of one rollout at most. */
const MAX_TARGETS = 10_000;

const create = route({
  method: "post",
  path: "/v1/rollouts",
  problems: [409, 422],
  roles: ["admin", "user"],
  summary:
    "Roll a new version of a deployment out to the devices its manifest's selector picks: in waves (count or percent, optionally growing by exponentialRate), at most maxPerMinute devices a minute, each wave held by a health gate (soak; apply, heartbeats and call error rate of every updated device); past the failure threshold every updated device is rolled back. The `deployment` field is a signed manifest as for POST /v1/deployments, with a selector and no devices",
  request: { body: jsonBody(RolloutRequest) },
  responses: { 201: jsonResponse(RolloutView, "Started; GET it to follow every decision") },
});

const idParams = z.object({ id: RolloutId });
const NamespaceQuery = z.object({ namespace: z.string().max(64).optional() });

const get = route({
  method: "get",
  path: "/v1/rollouts/{id}",
  roles: ["admin", "user"],
  summary: "A rollout: its state, each wave and its gate's numbers, each device's state and reasons, every decision, and for a rollback which gate tripped on which numbers",
  request: { params: idParams, query: NamespaceQuery },
  responses: { 200: jsonResponse(RolloutView, "The rollout") },
});

const act = route({
  method: "post",
  path: "/v1/rollouts/{id}/{action}",
  problems: [409],
  roles: ["admin", "user"],
  summary: "pause (no new devices, no gate passes), resume, abort (no more waves; updated devices keep the new version), or rollback (every updated device back to its previous version)",
  request: { params: z.object({ id: RolloutId, action: RolloutAction }), query: NamespaceQuery },
  responses: { 200: jsonResponse(RolloutView, "The rollout after the action") },
});

const RolloutListItem = z.object({ namespace: z.string(), id: RolloutId, deployment: z.string(), state: RolloutState, updatedAt: z.string() }).meta({ id: "RolloutListItem" });

const list = route({
  method: "get",
  path: "/v1/rollouts",
  roles: ["admin", "user"],
  summary: "Rollouts of the caller's namespace (all, for a global key) by id, with their state as each rollout last published it (GET /v1/rollouts/:id for the rest)",
  request: { query: z.object({ limit: z.coerce.number().int().min(1).max(500).default(100), cursor: z.string().max(200).optional() }) },
  responses: { 200: jsonResponse(z.object({ rollouts: z.array(RolloutListItem), next: z.string().nullable() }), "A page") },
});

const namespaceOf = (c: Ctx, fallback?: string) => callerNamespace(c) ?? fallback ?? DEFAULT_NAMESPACE;

export function rolloutRoutes(app: App) {
  app.openapi(create, async (c) => {
    const body = c.req.valid("json");
    const verified = await verifySignedClaim(c.env, body.deployment.trim(), "deployment", DeploymentManifest);
    if (!verified.ok) return problem(c, verified.problem, verified.detail);
    const caller = callerNamespace(c);
    if (caller !== null && verified.keyNamespace !== null && verified.keyNamespace !== caller) {
      return problem(c, "invalid-signature", `key ${verified.kid} belongs to another namespace`);
    }
    const namespace = caller ?? verified.keyNamespace ?? DEFAULT_NAMESPACE;
    const manifest = verified.value;
    if (!manifest.selector) return problem(c, "unprocessable", "a rollout's manifest needs a selector (and names no devices)");
    const version = await resolveVersion(c.env, manifest.modules);
    if (!version.ok) return problem(c, version.problem, version.detail);
    const { matches, misses } = select(withInterfaces(manifest.selector, version.value.requires), await fleetCandidates(c.env, namespace));
    if (matches.length === 0) {
      return problem(c, "unprocessable", `no device matches the selector: ${explainMisses(misses, MAX_REASONS_SHOWN)}`, {
        candidates: misses.slice(0, MAX_REASONS_SHOWN),
        ...(misses.length > MAX_REASONS_SHOWN ? { more: misses.length - MAX_REASONS_SHOWN } : {}),
      });
    }
    if (matches.length > MAX_TARGETS) return problem(c, "unprocessable", `the selector matches ${matches.length} devices; a rollout takes at most ${MAX_TARGETS}`);
    const id = body.id ?? `${manifest.id.slice(0, 50)}-${Date.now().toString(36)}`;
    const config: RolloutConfig = { selector: manifest.selector, strategy: body.strategy, gate: body.gate, rollback: body.rollback };
    const out = await rolloutStub(c.env, namespace, id).create({
      name: id,
      namespace,
      deployment: manifest.id,
      signedBy: verified.kid,
      config: JSON.stringify(config),
      template: JSON.stringify(version.value.modules),
      targets: matches.map((m) => m.id),
    });
    annotate(c, { event: "rollout started", rollout: id, deployment: manifest.id, targets: matches.length });
    return fromOutcome(c, out, (view) => c.json(view, 201, { Location: `/v1/rollouts/${id}` }));
  });

  app.openapi(list, async (c) => {
    const q = c.req.valid("query");
    const page = await registryStub(c.env).listRollouts(callerNamespace(c), q.limit, q.cursor ?? null);
    return c.json({ rollouts: page.rollouts as z.infer<typeof RolloutListItem>[], next: page.next }, 200);
  });

  app.openapi(get, async (c) => {
    const { id } = c.req.valid("param");
    const namespace = namespaceOf(c, c.req.valid("query").namespace);
    const shown = await rolloutStub(c.env, namespace, id).show(namespace);
    return shown ? c.json(shown, 200) : problem(c, "not-found", `rollout ${id} does not exist`);
  });

  app.openapi(act, async (c) => {
    const { id, action } = c.req.valid("param");
    const namespace = namespaceOf(c, c.req.valid("query").namespace);
    annotate(c, { event: `rollout ${action}`, rollout: id });
    return fromOutcome(c, await rolloutStub(c.env, namespace, id).act(namespace, action), (view) => c.json(view, 200));
  });
}
