/**
 * Reads what the WebAssembly JS API does not tell: each export's and import's
 * signature, and the memory limits. Also rewrites a module's memory maximum so
 * the agent can cap memory (worker resourceLimits do not cap Wasm memory).
 * Only the sections it needs are decoded; the rest is skipped by size.
 */
import type { FunctionSignature, ModuleExport, ModuleImport, ValType } from "../protocol/wasm.js";

export const WASM_PAGE_BYTES = 65536;

export class WasmFormatError extends Error {}

const VALTYPES: Record<number, ValType> = {
  0x7f: "i32",
  0x7e: "i64",
  0x7d: "f32",
  0x7c: "f64",
  0x7b: "v128",
  0x70: "funcref",
  0x6f: "externref",
};
const KINDS = ["function", "table", "memory", "global", "tag"] as const;

class Reader {
  pos: number;
  constructor(readonly bytes: Uint8Array, pos = 0, readonly end = bytes.length) {
    this.pos = pos;
  }
  u8(): number {
    if (this.pos >= this.end) throw new WasmFormatError("unexpected end of module");
    return this.bytes[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.u8();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) break;
      shift += 7;
      if (shift > 63) throw new WasmFormatError("LEB128 too long");
    }
    return result;
  }
  /** A vector length: every element takes at least one byte, so it cannot exceed what is left. */
  count(): number {
    const n = this.u32();
    if (n > this.end - this.pos) throw new WasmFormatError(`a vector claims ${n} elements, more than its section holds`);
    return n;
  }
  name(): string {
    const len = this.count();
    let s: string;
    try {
      s = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(this.bytes.subarray(this.pos, this.pos + len));
    } catch {
      throw new WasmFormatError("a name is not valid UTF-8");
    }
    this.pos += len;
    return s;
  }
  valtype(): ValType {
    const b = this.u8();
    const t = VALTYPES[b];
    if (!t) throw new WasmFormatError(`unsupported value type 0x${b.toString(16)}`);
    return t;
  }
  limits(): { flags: number; min: number; max: number | null } {
    const flags = this.u8();
    if (flags > 0x07) throw new WasmFormatError(`unsupported limits flags 0x${flags.toString(16)}`);
    const min = this.u32();
    const max = flags & 0x01 ? this.u32() : null;
    return { flags, min, max };
  }
}

export interface Section {
  id: number;
  /** offset of the section id byte */
  start: number;
  /** offset of the first content byte */
  contentStart: number;
  end: number;
}

export function sections(bytes: Uint8Array): Section[] {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmFormatError("not a WebAssembly binary (bad magic)");
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new WasmFormatError("unsupported WebAssembly version (components are not supported)");
  }
  const out: Section[] = [];
  const r = new Reader(bytes, 8);
  while (r.pos < bytes.length) {
    const start = r.pos;
    const id = r.u8();
    const size = r.u32();
    const contentStart = r.pos;
    const end = contentStart + size;
    if (end > bytes.length) throw new WasmFormatError(`section ${id} runs past the end`);
    out.push({ id, start, contentStart, end });
    r.pos = end;
  }
  return out;
}

export interface MemoryInfo {
  minPages: number;
  maxPages: number | null;
  shared: boolean;
  memory64: boolean;
  imported: boolean;
}

const memoryInfo = (l: { flags: number; min: number; max: number | null }, imported: boolean): MemoryInfo => ({
  minPages: l.min,
  maxPages: l.max,
  shared: (l.flags & 0x02) !== 0,
  memory64: (l.flags & 0x04) !== 0,
  imported,
});

export interface WasmInspection {
  exports: ModuleExport[];
  imports: ModuleImport[];
  memory: MemoryInfo | null;
}

export function inspect(bytes: Uint8Array): WasmInspection {
  const types: FunctionSignature[] = [];
  const imports: ModuleImport[] = [];
  const funcTypes: (number)[] = [];
  const exports: ModuleExport[] = [];
  let memory: MemoryInfo | null = null;
  const sig = (idx: number): FunctionSignature | undefined => types[idx];

  for (const s of sections(bytes)) {
    const r = new Reader(bytes, s.contentStart, s.end);
    switch (s.id) {
      case 1: {
        const n = r.count();
        for (let i = 0; i < n; i++) {
          const form = r.u8();
          if (form !== 0x60) throw new WasmFormatError("only plain function types are supported (no GC types)");
          const params = Array.from({ length: r.count() }, () => r.valtype());
          const results = Array.from({ length: r.count() }, () => r.valtype());
          types.push({ params, results });
        }
        break;
      }
      case 2: {
        const n = r.count();
        for (let i = 0; i < n; i++) {
          const module = r.name();
          const name = r.name();
          const kindByte = r.u8();
          const kind = KINDS[kindByte];
          if (!kind) throw new WasmFormatError(`unknown import kind ${kindByte}`);
          let signature: FunctionSignature | undefined;
          if (kind === "function") {
            const t = r.u32();
            signature = sig(t);
            funcTypes.push(t);
          } else if (kind === "table") {
            r.u8();
            r.limits();
          } else if (kind === "memory") {
            memory = memoryInfo(r.limits(), true);
          } else if (kind === "global") {
            r.valtype();
            r.u8();
          } else {
            r.u8();
            r.u32();
          }
          imports.push(signature ? { module, name, kind, signature } : { module, name, kind });
        }
        break;
      }
      case 3: {
        const n = r.count();
        for (let i = 0; i < n; i++) funcTypes.push(r.u32());
        break;
      }
      case 5: {
        const n = r.count();
        if (n > 0) memory ??= memoryInfo(r.limits(), false);
        break;
      }
      case 7: {
        const n = r.count();
        for (let i = 0; i < n; i++) {
          const name = r.name();
          const kindByte = r.u8();
          const kind = KINDS[kindByte];
          if (!kind) throw new WasmFormatError(`unknown export kind ${kindByte}`);
          const index = r.u32();
          const signature = kind === "function" ? sig(funcTypes[index] ?? -1) : undefined;
          exports.push(signature ? { name, kind, signature } : { name, kind });
        }
        break;
      }
    }
  }
  return { exports, imports, memory };
}

function encodeU32(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export type CapResult =
  | { ok: true; bytes: Uint8Array<ArrayBuffer>; maxPages: number | null }
  | { ok: false; reason: string };

/**
 * Returns the module with its defined memories' maximum lowered to `capPages`,
 * so `memory.grow` past the cap fails inside the guest instead of taking the
 * host's memory. A module that needs more than the cap at start is refused.
 */
export function capMemory(bytes: Uint8Array<ArrayBuffer>, capPages: number): CapResult {
  const info = inspect(bytes);
  if (!info.memory) return { ok: true, bytes, maxPages: null };
  if (info.memory.imported) return { ok: false, reason: "modules that import their memory are not supported" };
  if (info.memory.memory64) return { ok: false, reason: "64-bit memories are not supported" };
  if (info.memory.minPages > capPages) {
    return { ok: false, reason: `the module needs ${info.memory.minPages} pages at start, over the cap of ${capPages} pages` };
  }
  if (info.memory.maxPages !== null && info.memory.maxPages <= capPages) return { ok: true, bytes, maxPages: info.memory.maxPages };

  const memSection = sections(bytes).find((s) => s.id === 5)!;
  const r = new Reader(bytes, memSection.contentStart, memSection.end);
  const count = r.count();
  const content: number[] = [...encodeU32(count)];
  for (let i = 0; i < count; i++) {
    const l = r.limits();
    content.push((l.flags & 0x02) | 0x01, ...encodeU32(l.min), ...encodeU32(Math.min(l.max ?? capPages, capPages)));
  }
  const section = [5, ...encodeU32(content.length), ...content];
  const out = new Uint8Array(bytes.length - (memSection.end - memSection.start) + section.length);
  out.set(bytes.subarray(0, memSection.start), 0);
  out.set(section, memSection.start);
  out.set(bytes.subarray(memSection.end), memSection.start + section.length);
  return { ok: true, bytes: out, maxPages: capPages };
}
