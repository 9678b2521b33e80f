import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { RestartPolicy, ServiceSpec } from "./service.js";

describe("service spec", () => {
  it("every example in examples/services is a valid ServiceSpec", () => {
    const files = readdirSync("examples/services").filter((f) => f.endsWith(".json"));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(ServiceSpec.safeParse(JSON.parse(readFileSync(join("examples/services", f), "utf8"))).error, f).toBeUndefined();
  });

  it("fills in defaults and refuses contradictions", () => {
    const s = ServiceSpec.parse({ name: "a", module: "0".repeat(64) });
    expect(s).toMatchObject({ entry: "_start", args: [], env: {}, envFrom: [], startStopped: false, sandbox: "own", restart: RestartPolicy.parse({}) });
    expect(ServiceSpec.safeParse({ name: "a", module: "0".repeat(64), startAt: new Date().toISOString(), startAfterMs: 5 }).success).toBe(false);
    expect(ServiceSpec.safeParse({ name: "../x", module: "0".repeat(64) }).success).toBe(false);
    expect(ServiceSpec.safeParse({ name: "a", module: "0".repeat(64), env: { "BAD-NAME": "x" } }).success).toBe(false);
    expect(RestartPolicy.safeParse({ initialDelayMs: 10, maxDelayMs: 5 }).success).toBe(false);
  });
});
