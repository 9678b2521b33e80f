/** Staged rollouts of a new deployment version to a selector: start, read (every decision), pause/resume/abort/rollback. */
import { z } from "zod";
import { DeploymentId, DeploymentManifest } from "../../protocol/deployment.js";
import { DEFAULT_NAMESPACE } from "../../protocol/keys.js";
import { RolloutAction, RolloutId, RolloutList, type RolloutListItem, RolloutRequest, RolloutState, RolloutView } from "../../protocol/rollout.js";
import { select } from "../../core/selector.js";
import { noMatchProblem } from "../selector-problem.js";
import { jsonBody, jsonResponse, problemResponse, route } from "../route.js";
import { annotate, type App, type Ctx, fromOutcome, problem } from "../http.js";
import { callerNamespace } from "../tenancy.js";
import { verifySignedClaim } from "../signing.js";
import { resolveVersion } from "../deploy.js";
import { fleetCandidates, withInterfaces } from "../../durable/fleet.js";
import type { RolloutConfig } from "../../durable/rollout-object.js";
import { registryStub, rolloutStub } from "../../platform/stubs.js";
import { ACTIVE_ROLLOUT_STATES } from "../../durable/registry-object.js";

/** Targets of one rollout at most. */
const MAX_TARGETS = 10_000;

const create = route({
  method: "post",
  path: "/v1/rollouts",
  problems: [422],
  roles: ["admin", "user"],
  summary:
    "Roll a new version of a deployment out to the devices its manifest's selector picks: in waves (count or percent, optionally growing by exponentialRate), at most maxPerMinute devices a minute, each wave held by a health gate (soak; apply, heartbeats and call error rate of every updated device); past the failure threshold every updated device is rolled back. The `deployment` field is a signed manifest as for POST /v1/deployments, with a selector and no devices",
  request: { body: jsonBody(RolloutRequest) },
  responses: {
    201: jsonResponse(RolloutView, "Started; GET it to follow every decision"),
    409: problemResponse("A rollout by this id exists, or another rollout of the same deployment is active (running, paused or rolling back): `activeRollout` names it; pause is not enough, abort it (or let it end) first"),
  },
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

const list = route({
  method: "get",
  path: "/v1/rollouts",
  roles: ["admin", "user"],
  summary: "Rollouts of the caller's namespace (of every namespace, or of `namespace`, for a key that spans them), newest first, in keyset pages; filter by state and deployment. The listing follows each rollout's own state within moments; GET /v1/rollouts/:id is the rollout itself",
  request: {
    query: z.object({
      state: RolloutState.optional(),
      deployment: DeploymentId.optional(),
      namespace: z.string().max(64).optional(),
      limit: z.coerce.number().int().min(1).max(500).default(100).meta({ type: "integer" }),
      cursor: z.string().max(300).optional(),
    }),
  },
  responses: { 200: jsonResponse(RolloutList, "A page of rollouts") },
});

type ListCursor = { createdAt: number; namespace: string; id: string };
/** Cursors are opaque to clients: base64url of JSON [createdAt, namespace, id]. */
const encodeCursor = (c: ListCursor) => btoa(JSON.stringify([c.createdAt, c.namespace, c.id])).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
function decodeCursor(s: string): ListCursor | null {
  try {
    const v = JSON.parse(atob(s.replace(/-/g, "+").replace(/_/g, "/"))) as unknown;
    if (!Array.isArray(v) || v.length !== 3 || !Number.isSafeInteger(v[0]) || typeof v[1] !== "string" || !RolloutId.safeParse(v[2]).success) return null;
    return { createdAt: v[0] as number, namespace: v[1], id: v[2] as string };
  } catch {
    return null;
  }
}

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
    if (matches.length === 0) return noMatchProblem(c, misses);
    if (matches.length > MAX_TARGETS) return problem(c, "unprocessable", `the selector matches ${matches.length} devices; a rollout takes at most ${MAX_TARGETS}`);
    const id = body.id ?? `${manifest.id.slice(0, 50)}-${Date.now().toString(36)}`;
    // One active rollout per deployment: claimed in the listing before the rollout starts.
    const claimed = await claim(c, namespace, id, manifest.id, matches.length);
    if (claimed) return claimed;
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
    const scope = callerNamespace(c);
    if (scope !== null && q.namespace !== undefined && q.namespace !== scope) return problem(c, "forbidden", `this key may only list the rollouts of namespace ${scope}`);
    const after = q.cursor ? decodeCursor(q.cursor) : null;
    if (q.cursor && !after) return problem(c, "validation", "the cursor is not one this API handed out");
    const page = await registryStub(c.env).listRollouts({ namespace: scope ?? q.namespace ?? null, state: q.state ?? null, deployment: q.deployment ?? null, limit: q.limit, after });
    return c.json({ rollouts: page.rollouts as RolloutListItem[], nextCursor: page.next ? encodeCursor(page.next) : null }, 200);
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

/**
 * Claims the deployment for a new rollout in the registry's listing; the answer to send when
 * it cannot be (409 naming the active rollout), or null. A listed active rollout is asked to
 * publish its state again first, so a lost publish or a creation that failed after its claim
 * does not hold the deployment for ever.
 */
async function claim(c: Ctx, namespace: string, id: string, deployment: string, targets: number): Promise<Response | null> {
  const registry = registryStub(c.env);
  for (let attempt = 0; ; attempt++) {
    const out = await registry.claimRollout(namespace, id, deployment, targets);
    if (out.claimed) return null;
    if ("exists" in out) {
      if (attempt === 0 && (await rolloutStub(c.env, namespace, id).republish(namespace, id)) === null) continue;
      return problem(c, "conflict", `rollout ${id} exists`);
    }
    const state = attempt === 0 ? await rolloutStub(c.env, namespace, out.active).republish(namespace, out.active) : "running";
    if (state !== null && (ACTIVE_ROLLOUT_STATES as readonly string[]).includes(state)) {
      return problem(c, "conflict", `rollout ${out.active} of deployment ${deployment} is ${state}: abort it (or let it end) before starting another`, { activeRollout: out.active });
    }
  }
}
