import { z } from "zod";
import { route } from "../route.js";
import { annotate, type App } from "../http.js";
import { callerNamespace } from "../tenancy.js";
import { collect } from "../metrics.js";
import { EXPOSITION_CONTENT_TYPE, renderExposition } from "../../core/metrics.js";

const scrape = route({
  method: "get",
  path: "/metrics",
  roles: ["admin", "metrics"],
  summary: "Fleet metrics in the Prometheus text format (a key scoped to a namespace sees that namespace's)",
  description: "Read from aggregates the objects keep (device listing shards, job index shards, registry): a scrape never asks a device object. Metrics and labels: docs/observability.md.",
  responses: { 200: { description: "Prometheus text exposition format 0.0.4", content: { "text/plain": { schema: z.string() } } } },
});

export function metricsRoutes(app: App) {
  app.openapi(scrape, async (c) => {
    const started = Date.now();
    const body = renderExposition(await collect(c.env, callerNamespace(c)));
    annotate(c, { scrapeMs: Date.now() - started, scrapeBytes: body.length });
    return c.body(body, 200, { "content-type": EXPOSITION_CONTENT_TYPE, "cache-control": "no-store" });
  });
}
