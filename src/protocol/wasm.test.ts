import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { coerceArgs, resultToJson } from "./wasm.js";

describe("arguments typed from the export's signature", () => {
  it("takes i64 as safe numbers or decimal strings, never rounding", () => {
    expect(coerceArgs({ params: ["i64"], results: [] }, [12])).toEqual({ ok: true, values: [12n] });
    expect(coerceArgs({ params: ["i64"], results: [] }, ["9223372036854775807"])).toEqual({ ok: true, values: [9223372036854775807n] });
    const unsafe = coerceArgs({ params: ["i64"], results: [] }, [2 ** 53 + 2]);
    expect(unsafe.ok).toBe(false);
    expect(coerceArgs({ params: ["i64"], results: [] }, ["1.5"]).ok).toBe(false);
  });

  it("checks the count and the integer types", () => {
    expect(coerceArgs({ params: ["i32", "i32"], results: [] }, [1])).toMatchObject({ ok: false, message: expect.stringContaining("expected 2") });
    expect(coerceArgs({ params: ["i32"], results: [] }, [1.5]).ok).toBe(false);
    expect(coerceArgs({ params: ["i32"], results: [] }, [2 ** 32]).ok).toBe(false);
    expect(coerceArgs({ params: ["i32"], results: [] }, [true])).toEqual({ ok: true, values: [1] });
    expect(coerceArgs({ params: ["f64"], results: [] }, ["2.5"])).toEqual({ ok: true, values: [2.5] });
    expect(coerceArgs({ params: ["f64"], results: [] }, ["abc"]).ok).toBe(false);
  });

  it("round-trips every i64 through its decimal string", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (v) => {
        const c = coerceArgs({ params: ["i64"], results: [] }, [v.toString()]);
        expect(c).toEqual({ ok: true, values: [v] });
        const back = resultToJson(v);
        expect(BigInt(back as string | number)).toBe(v);
      }),
    );
  });

  it("never throws on arbitrary JSON arguments", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("i32", "i64", "f32", "f64", "v128") as fc.Arbitrary<"i32">, { maxLength: 4 }),
        fc.array(fc.oneof(fc.double(), fc.string(), fc.boolean(), fc.integer()), { maxLength: 4 }),
        (params, args) => {
          const r = coerceArgs({ params, results: [] }, args);
          expect(typeof r.ok).toBe("boolean");
        },
      ),
    );
  });

  it("shows results as exact JSON", () => {
    expect(resultToJson(233n)).toBe(233);
    expect(resultToJson(2n ** 60n)).toBe("1152921504606846976");
    expect(resultToJson(Number.NaN)).toBe("NaN");
    expect(resultToJson(undefined)).toBeNull();
    expect(resultToJson([1, 2n])).toEqual([1, 2]);
  });
});
