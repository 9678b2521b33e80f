/**
 * Writes the audit trail (docs/observability.md): after a mutating request's response is
 * decided, one record (who, role, namespace, operationId, target, status, trace id, time)
 * joins this isolate's buffer for the caller's namespace; the buffer goes to that
 * namespace's AuditObject in one append, ctx.waitUntil'd, at most every FLUSH_MS. The
 * request never waits for it.
 *
 * Audited: POST/PUT/PATCH/DELETE by an identified caller on the API (/v1/*), the JSON-RPC
 * calls among them (each replays its REST route, so each is audited as that operation).
 * Not audited: the agent protocol (/v1/agent/*: heartbeats, acks, results, logs; the jobs'
 * own records keep what it changes), and requests refused before the caller was known (401).
 */
import type { MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import type { AuditRecord } from "../protocol/audit.js";
import type { Env } from "../platform/env.js";
import { auditStub } from "../platform/stubs.js";
import { log, type AppEnv, type Ctx } from "./http.js";
import { operationIdOf } from "./route.js";

const FLUSH_MS = 50;
/** A buffer this large goes at once. */
const FLUSH_AT = 500;
const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** The log a caller's actions go to, and the one it reads by default. */
export const auditNamespaceOf = (namespace: string | null) => namespace ?? "*";

const buffers = new Map<string, AuditRecord[]>();
let timer: ReturnType<typeof setTimeout> | null = null;
let flushed: Promise<void> | null = null;

async function flush(env: Env) {
  timer = null;
  const batches = [...buffers];
  buffers.clear();
  await Promise.all(batches.map(async ([ns, records]) => {
    try {
      await auditStub(env, ns).append(records);
    } catch (err) {
      log("error", "audit entries could not be written", { namespace: ns, count: records.length, error: String(err) });
    }
  }));
}

/** Queues a record; the flush is kept alive by the request that started it. */
export function audit(env: Env, waitUntil: (p: Promise<unknown>) => void, record: AuditRecord) {
  const list = buffers.get(record.namespace) ?? [];
  list.push(record);
  buffers.set(record.namespace, list);
  if (list.length >= FLUSH_AT) {
    if (timer) clearTimeout(timer);
    waitUntil(flush(env));
    return;
  }
  if (timer) return waitUntil(flushed!);
  flushed = new Promise<void>((resolve) => {
    timer = setTimeout(() => void flush(env).then(resolve), FLUSH_MS);
  });
  waitUntil(flushed);
}

/** The route that answered: its operationId (GET /v1/jobs/{id} -> getJobsById) and the value of its first path parameter. */
function routeOf(c: Ctx): { operation: string; param: string | null } {
  const handler = matchedRoutes(c).filter((r) => r.method !== "ALL").at(-1);
  if (!handler) return { operation: "unknown", param: null };
  const pattern = handler.path.split("/");
  const concrete = c.req.path.split("/");
  const at = pattern.findIndex((s) => s.startsWith(":"));
  return {
    operation: operationIdOf(c.req.method, handler.path.replace(/:([A-Za-z0-9_]+)(\{[^}]*\})?/g, "{$1}")),
    param: at >= 0 && concrete[at] ? decodeURIComponent(concrete[at]!) : null,
  };
}

/** What the request acted on: the id a route annotated, else its path parameter, else the path. */
function targetOf(c: Ctx, param: string | null): string {
  const f = c.get("logFields") ?? {};
  for (const k of ["jobId", "deviceId", "device", "deployment", "keyId", "kid", "digest"]) {
    const v = f[k];
    if (typeof v === "string" && v) return v;
  }
  return param ?? c.req.path;
}

export function auditTrail(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await next();
    const p = c.get("principal");
    const path = c.req.path;
    if (!p || !MUTATING.has(c.req.method) || !path.startsWith("/v1/") || path.startsWith("/v1/agent/")) return;
    const trace = c.get("trace");
    const { operation, param } = routeOf(c);
    let waitUntil: (p: Promise<unknown>) => void;
    try {
      const ctx = c.executionCtx;
      waitUntil = (x) => ctx.waitUntil(x);
    } catch {
      waitUntil = () => {}; // no execution context (an in-process app.request): the timer still flushes
    }
    audit(c.env, waitUntil, {
      at: Date.now(),
      namespace: auditNamespaceOf(p.namespace),
      kind: "request",
      actor: p.role === "device" ? p.deviceId : p.keyId,
      role: p.role,
      operation,
      target: targetOf(c, param),
      method: c.req.method,
      path,
      outcome: c.res.status,
      traceId: trace?.traceId ?? null,
      requestId: c.get("requestId") ?? null,
    });
  };
}
