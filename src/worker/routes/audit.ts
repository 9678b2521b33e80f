import { AuditPage, AuditQuery } from "../../protocol/audit.js";
import { jsonResponse as json, route } from "../route.js";
import { problem, type App } from "../http.js";
import { callerNamespace } from "../tenancy.js";
import { auditNamespaceOf } from "../audit.js";
import { auditStub } from "../../platform/stubs.js";

const listAudit = route({
  method: "get",
  path: "/v1/audit",
  roles: ["admin"],
  summary: "The audit trail: mutating requests and commands sent to devices, newest first (keyset pages)",
  description: "A namespace's admin reads its own namespace's log; a key spanning all namespaces reads the log of such keys (`*`, the default) or any namespace's with `namespace`. Kept AUDIT_RETENTION_DAYS (default 90). docs/observability.md.",
  request: { query: AuditQuery },
  responses: { 200: json(AuditPage, "A page of entries") },
});

export function auditRoutes(app: App) {
  app.openapi(listAudit, async (c) => {
    const q = c.req.valid("query");
    const scope = callerNamespace(c);
    if (scope !== null && q.namespace !== undefined && q.namespace !== scope) {
      return problem(c, "forbidden", `this key may only read the audit log of namespace ${scope}`);
    }
    const ms = (s: string | undefined) => (s === undefined ? null : Date.parse(s));
    const page = await auditStub(c.env, q.namespace ?? auditNamespaceOf(scope)).list({
      since: ms(q.since), until: ms(q.until), actor: q.actor ?? null, operation: q.operation ?? null, target: q.target ?? null,
      outcome: q.outcome ?? null, before: q.cursor === undefined ? null : Number(q.cursor), limit: q.limit,
    });
    return c.json({ entries: page.entries, nextCursor: page.more ? String(page.entries.at(-1)!.seq) : null }, 200);
  });
}
