/**
 * wasmvisor_runtime_usage_total (src/platform/usage.ts, docs/cost.md): the billed units the
 * control plane counts move with real work, by what that work does, and only an unscoped
 * scrape sees them.
 */
import { describe, expect, it } from "vitest";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import type { UsageKind } from "../../src/platform/usage.js";
import { ADMIN, call, poll, registerDevice, report, uploadModule } from "./helpers.js";

type Parsed = { name: string; metrics: { labels?: Record<string, string>; value?: string }[] }[];

async function usage(token = ADMIN): Promise<Record<UsageKind, number>> {
  const res = await call("GET", "/metrics", { token });
  expect(res.status).toBe(200);
  const family = (parsePrometheusTextFormat(res.body as string) as Parsed).find((f) => f.name === "wasmvisor_runtime_usage_total");
  return Object.fromEntries((family?.metrics ?? []).map((m) => [m.labels!.what!, Number(m.value)])) as Record<UsageKind, number>;
}

describe("the runtime usage counters", () => {
  it("count SQL rows, object calls and nothing for a request that touches no object", async () => {
    const { deviceId, credential } = await registerDevice("usage");
    const digest = await uploadModule("math");
    const before = await usage();
    expect(Object.keys(before).sort()).toEqual(["alarmsRun", "alarmsSet", "objectCalls", "objectWebSocketMessages", "sqlRowsRead", "sqlRowsWritten", "sqlStatements"]);

    // A request that reaches no object: only the scrape's own reads move the counters.
    await call("GET", "/healthz", { token: null });
    const idle = await usage();
    const scrapeCost = idle.objectCalls - before.objectCalls;

    // One job, leased and reported over HTTP: object calls and rows written, and no WebSocket message.
    const created = await call("POST", "/v1/jobs", { json: { device: deviceId, module: digest, function: "add32", args: [1, 2] } });
    expect(created.status).toBe(202);
    const lease = (await poll(credential)).body.jobs[0];
    expect((await report(credential, lease.jobId, lease.leaseToken, 3)).status).toBe(200);
    const after = await usage();
    // submit + poll + report at least, besides the two scrapes' own reads
    expect(after.objectCalls - idle.objectCalls).toBeGreaterThanOrEqual(3 + scrapeCost);
    expect(after.sqlRowsWritten - idle.sqlRowsWritten).toBeGreaterThanOrEqual(3);
    expect(after.sqlStatements).toBeGreaterThan(idle.sqlStatements);
    expect(after.objectWebSocketMessages).toBe(idle.objectWebSocketMessages);
  });

  it("are not shown to a namespace's metrics key", async () => {
    const admin = (await call("POST", "/v1/keys", { json: { role: "admin", namespace: "usage-ns" } })).body.key as string;
    const metrics = (await call("POST", "/v1/keys", { token: admin, json: { role: "metrics" } })).body.key as string;
    expect(await usage(metrics)).toEqual({});
  });
});
