/** WebAssembly value types and the JSON forms of arguments and results. */
import { z } from "zod";

export const ValType = z.enum(["i32", "i64", "f32", "f64", "v128", "funcref", "externref"]);
export type ValType = z.infer<typeof ValType>;

export const FunctionSignature = z.object({ params: z.array(ValType), results: z.array(ValType) });
export type FunctionSignature = z.infer<typeof FunctionSignature>;

export const ModuleExport = z.object({
  name: z.string(),
  kind: z.enum(["function", "table", "memory", "global", "tag"]),
  signature: FunctionSignature.optional(),
});
export const ModuleImport = z.object({
  module: z.string(),
  name: z.string(),
  kind: z.enum(["function", "table", "memory", "global", "tag"]),
  signature: FunctionSignature.optional(),
});
export type ModuleExport = z.infer<typeof ModuleExport>;
export type ModuleImport = z.infer<typeof ModuleImport>;

export const WASI_MODULES: ReadonlySet<string> = new Set(["wasi_snapshot_preview1", "wasi_unstable"]);

/**
 * The host functions a module needs, named as device descriptions list them:
 * WASI functions by their bare name (wasmiot's supervisorInterfaces), others as module.name.
 */
export function requiredInterfaces(imports: readonly ModuleImport[]): string[] {
  return imports.filter((i) => i.kind === "function").map((i) => (WASI_MODULES.has(i.module) ? i.name : `${i.module}.${i.name}`));
}

/** What the device lacks of `required`; a non-WASI import also matches a bare name in the device's list. */
export function missingInterfaces(required: readonly string[], provided: ReadonlySet<string>): string[] {
  return required.filter((r) => !provided.has(r) && !provided.has(r.slice(r.lastIndexOf(".") + 1)));
}

export const MemoryLimits = z.object({ minPages: z.number().int(), maxPages: z.number().int().nullable() });

export const ModuleInfo = z.object({
  digest: z.string(),
  size: z.number().int(),
  exports: z.array(ModuleExport),
  imports: z.array(ModuleImport),
  memory: MemoryLimits.nullable(),
}).meta({ id: "ModuleInfo" });
export type ModuleInfo = z.infer<typeof ModuleInfo>;

/**
 * An argument as JSON: a number, or a decimal string for 64-bit integers that
 * JSON numbers cannot hold exactly. Booleans pass as 0/1 for i32.
 */
export const Arg = z.union([z.number(), z.string().max(64), z.boolean()]);
export type Arg = z.infer<typeof Arg>;

const I64_MIN = -(2n ** 63n);
const U64_MAX = 2n ** 64n - 1n;

export type CoercedArg = number | bigint;

/**
 * Turns JSON arguments into the values a WebAssembly call takes, following the
 * export's signature. Never rounds: an i64 given as a JSON number must be a safe
 * integer, anything larger must come as a decimal string.
 */
export function coerceArgs(
  signature: FunctionSignature,
  args: readonly Arg[],
): { ok: true; values: CoercedArg[] } | { ok: false; message: string } {
  if (args.length !== signature.params.length) {
    return { ok: false, message: `expected ${signature.params.length} argument(s) (${signature.params.join(", ") || "none"}), got ${args.length}` };
  }
  const values: CoercedArg[] = [];
  for (let i = 0; i < args.length; i++) {
    const type = signature.params[i]!;
    const raw = args[i]!;
    const v = coerceOne(type, raw);
    if (typeof v === "string") return { ok: false, message: `argument ${i} (${type}): ${v}` };
    values.push(v.value);
  }
  return { ok: true, values };
}

function coerceOne(type: ValType, raw: Arg): { value: CoercedArg } | string {
  const asNumber = typeof raw === "boolean" ? (raw ? 1 : 0) : raw;
  switch (type) {
    case "i32": {
      const n = typeof asNumber === "string" ? parseDecimal(asNumber) : asNumber;
      if (typeof n === "string") return n;
      const big = typeof n === "bigint" ? n : Number.isInteger(n) ? BigInt(n) : undefined;
      if (big === undefined) return `${raw} is not an integer`;
      if (big < -(2n ** 31n) || big > 2n ** 32n - 1n) return `${raw} does not fit in 32 bits`;
      return { value: Number(BigInt.asIntN(32, big)) };
    }
    case "i64": {
      let big: bigint;
      if (typeof asNumber === "string") {
        const p = parseDecimal(asNumber);
        if (typeof p === "string") return p;
        big = p;
      } else {
        if (!Number.isSafeInteger(asNumber)) return `${raw} is not a safe integer; pass large 64-bit values as decimal strings`;
        big = BigInt(asNumber);
      }
      if (big < I64_MIN || big > U64_MAX) return `${raw} does not fit in 64 bits`;
      return { value: BigInt.asIntN(64, big) };
    }
    case "f32":
    case "f64": {
      const n = typeof asNumber === "string" ? Number(asNumber) : asNumber;
      if (typeof asNumber === "string" && (asNumber.trim() === "" || Number.isNaN(n)) && asNumber !== "NaN") return `${raw} is not a number`;
      return { value: n };
    }
    default:
      return `parameters of type ${type} cannot be passed from JSON`;
  }
}

function parseDecimal(s: string): bigint | string {
  if (!/^-?\d{1,20}$/.test(s.trim())) return `"${s}" is not a decimal integer`;
  return BigInt(s.trim());
}

/**
 * A function's return value as JSON: null for no result, an array for several.
 * Numbers stay numbers while exact; i64 beyond 2^53 and non-finite floats become strings.
 */
const Scalar = z.union([z.number(), z.string()]);
export const ResultValue = z.union([Scalar, z.null(), z.array(Scalar)]);
export type ResultValue = z.infer<typeof ResultValue>;

function scalarToJson(value: unknown): number | string {
  if (typeof value === "bigint") {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value.toString();
  }
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  return String(value);
}

export function resultToJson(value: unknown): ResultValue {
  if (value === undefined || value === null) return null;
  if (Array.isArray(value)) return value.map(scalarToJson);
  return scalarToJson(value);
}
