import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { bindArguments, chainedRequest, chainState, chooseDevice, overallState } from "./calls.js";
import { FunctionSpec } from "../protocol/deployment.js";

const spec = (params: unknown[], extra: Record<string, unknown> = {}) => FunctionSpec.parse({ params, ...extra });
const sub = spec([{ name: "minuend", type: "integer" }, { name: "subtrahend", type: "integer" }]);

describe("binding a call's parameters by name", () => {
  it("orders arguments as the function declares them, whatever the request's order", () => {
    expect(bindArguments(sub, { subtrahend: "3", minuend: "10" }, {})).toEqual({ ok: true, args: [10, 3], shown: { minuend: "10", subtrahend: "3" } });
  });

  it("names the parameter that is missing, mistyped or unknown", () => {
    expect(bindArguments(sub, { minuend: "10" }, {})).toMatchObject({ ok: false, param: "subtrahend" });
    expect(bindArguments(sub, { minuend: "10", subtrahend: "x" }, {})).toMatchObject({ ok: false, param: "subtrahend", detail: "parameter subtrahend must be an integer" });
    expect(bindArguments(sub, { minuend: "1", subtrahend: "2", extra: "3" }, {})).toMatchObject({ ok: false, param: "extra" });
  });

  it("takes body parameters from the body only, typed", () => {
    const s = spec([{ name: "x", type: "number", in: "body" }, { name: "on", type: "boolean", in: "body" }]);
    expect(bindArguments(s, {}, { x: 2.5, on: "true" })).toMatchObject({ ok: true, args: [2.5, true] });
    expect(bindArguments(s, { x: "2.5" }, { on: true })).toMatchObject({ ok: false, param: "x" });
  });

  it("keeps integers beyond 2^53 exact as decimal strings", () => {
    expect(bindArguments(spec([{ name: "n", type: "integer" }]), { n: "9007199254740993" }, {})).toMatchObject({ ok: true, args: ["9007199254740993"] });
  });

  it("lets optional parameters end the list but not leave holes", () => {
    const s = spec([{ name: "a", type: "integer" }, { name: "b", type: "integer", required: false }, { name: "c", type: "integer", required: false }]);
    expect(bindArguments(s, { a: "1" }, {})).toMatchObject({ ok: true, args: [1] });
    expect(bindArguments(s, { a: "1", c: "3" }, {})).toMatchObject({ ok: false, param: "c" });
  });

  it("never throws and types every safe integer exactly (property)", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.string()), fc.dictionary(fc.string(), fc.anything()), (q, b) => {
        expect(() => bindArguments(sub, q, b as Record<string, unknown>)).not.toThrow();
      }),
    );
    fc.assert(
      fc.property(fc.maxSafeInteger(), fc.maxSafeInteger(), (m, s) => {
        expect(bindArguments(sub, { minuend: String(m), subtrahend: String(s) }, {})).toMatchObject({ ok: true, args: [m, s] });
      }),
    );
  });
});

describe("chains", () => {
  const next = spec([{ name: "param0", type: "integer" }]);
  it("passes a primitive as the next function's first parameter, and no primitive with files (wasmiot's rules)", () => {
    expect(chainedRequest(next, 8, false)).toEqual({ query: { param0: "8" }, body: {} });
    expect(chainedRequest(next, 8, true)).toEqual({ query: {}, body: {} });
    expect(chainedRequest(next, null, false)).toEqual({ query: {}, body: {} });
  });

  it("fails a chain as soon as a step fails, succeeds only when the last step did", () => {
    expect(chainState(["SUCCEEDED", "RUNNING"], false)).toBe("running");
    expect(chainState(["SUCCEEDED", "FAILED"], true)).toBe("failed");
    expect(chainState(["SUCCEEDED", "ERROR"], false)).toBe("failed");
    expect(chainState(["SUCCEEDED", "SUCCEEDED"], true)).toBe("succeeded");
  });
});

describe("deployment state and placement", () => {
  it("is active when every device is, failed when any is", () => {
    expect(overallState(["active", "active"])).toBe("active");
    expect(overallState(["active", "failed"])).toBe("failed");
    expect(overallState(["active", "pending"])).toBe("pending");
    expect(overallState(["applying", "active"])).toBe("applying");
    expect(overallState([])).toBe("pending");
  });

  it("prefers an online holder", () => {
    expect(chooseDevice([{ id: "a", online: false }, { id: "b", online: true }])).toBe("b");
    expect(chooseDevice([{ id: "a", online: false }])).toBe("a");
    expect(chooseDevice([])).toBeNull();
  });
});
