import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { capMemory, inspect, WasmFormatError } from "./binary.js";
import { compileWat } from "../../test/helpers/wat.js";

const fibo = new Uint8Array(readFileSync(new URL("../../examples/wasm/fibo.wasm", import.meta.url)));

describe("Wasm binary inspection", () => {
  it("reads the signatures of a real module's exports", () => {
    const info = inspect(fibo);
    expect(info.exports.find((e) => e.name === "fibo")).toEqual({ name: "fibo", kind: "function", signature: { params: ["i64"], results: ["i64"] } });
    expect(info.exports.find((e) => e.name === "subtract")?.signature).toEqual({ params: ["i64", "i64"], results: ["i64"] });
    expect(info.imports).toEqual([]);
    expect(info.memory?.imported).toBe(false);
  });

  it("reads imports with their signatures", async () => {
    const bytes = await compileWat(`(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))) (memory 1 2) (func (export "f") (param f32) (result f64) f64.const 1))`);
    const info = inspect(bytes);
    expect(info.imports).toEqual([{ module: "wasi_snapshot_preview1", name: "proc_exit", kind: "function", signature: { params: ["i32"], results: [] } }]);
    expect(info.exports[0]).toEqual({ name: "f", kind: "function", signature: { params: ["f32"], results: ["f64"] } });
    expect(info.memory).toMatchObject({ minPages: 1, maxPages: 2 });
  });

  it("caps the memory maximum so growth past the cap fails in the guest", async () => {
    const bytes = await compileWat(`(module (memory (export "memory") 1) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`);
    const capped = capMemory(bytes, 10);
    expect(capped.ok).toBe(true);
    if (!capped.ok) return;
    expect(inspect(capped.bytes).memory).toMatchObject({ minPages: 1, maxPages: 10 });
    const { instance } = (await WebAssembly.instantiate(capped.bytes)) as unknown as { instance: WebAssembly.Instance };
    const grow = instance.exports.grow as (n: number) => number;
    expect(grow(9)).toBe(1);
    expect(grow(1)).toBe(-1);
  });

  it("refuses a module that needs more than the cap at start", async () => {
    const bytes = await compileWat(`(module (memory 20))`);
    expect(capMemory(bytes, 10)).toMatchObject({ ok: false });
  });

  it("keeps a module whose maximum is already under the cap byte for byte", async () => {
    const bytes = await compileWat(`(module (memory 1 4))`);
    const capped = capMemory(bytes, 10);
    expect(capped.ok && capped.bytes).toBe(bytes);
  });

  it("rejects garbage with a format error, never anything else", () => {
    expect(() => inspect(new Uint8Array([1, 2, 3]))).toThrow(WasmFormatError);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat({ max: fibo.length }), (noise, at) => {
        const bytes = new Uint8Array(fibo);
        bytes.set(noise.subarray(0, Math.max(0, bytes.length - at)), at);
        try {
          inspect(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(WasmFormatError);
        }
      }),
      // Regressions: an invalid UTF-8 name escaped as a TypeError; a huge vector count as a RangeError.
      { numRuns: 300, examples: [[Uint8Array.from([128]), 210], [Uint8Array.from([128, 128, 128, 128]), 12]] },
    );
  });
});
