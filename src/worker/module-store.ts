/**
 * Modules are content-addressed in R2: `modules/<sha256>.wasm` and the
 * inspection result beside it. Both are immutable, so an isolate may cache
 * the inspection forever.
 */
import { sha256Hex } from "../core/crypto.js";
import { inspect, WasmFormatError } from "../wasm/binary.js";
import type { ModuleInfo } from "../protocol/wasm.js";
import type { Env } from "../platform/env.js";
import { moduleBinaryKey, moduleInfoKey } from "../platform/r2-keys.js";

const infoCache = new Map<string, ModuleInfo>();

export type StoreResult = { ok: true; info: ModuleInfo; created: boolean } | { ok: false; detail: string };

export async function storeModule(env: Env, bytes: Uint8Array<ArrayBuffer>): Promise<StoreResult> {
  // workerd may not compile Wasm, but validate() checks the whole module as a compiler would.
  if (!WebAssembly.validate(bytes)) return { ok: false, detail: "the binary does not validate as a WebAssembly module" };
  let inspected;
  try {
    inspected = inspect(bytes);
  } catch (e) {
    if (e instanceof WasmFormatError) return { ok: false, detail: e.message };
    throw e;
  }
  const digest = await sha256Hex(bytes);
  const info: ModuleInfo = {
    digest,
    size: bytes.length,
    exports: inspected.exports,
    imports: inspected.imports,
    memory: inspected.memory ? { minPages: inspected.memory.minPages, maxPages: inspected.memory.maxPages } : null,
  };
  const existing = await env.MODULES.head(moduleInfoKey(digest));
  if (!existing) {
    // Binary first: an info object exists only for a stored binary.
    await env.MODULES.put(moduleBinaryKey(digest), bytes, { httpMetadata: { contentType: "application/wasm" }, sha256: digest });
    await env.MODULES.put(moduleInfoKey(digest), JSON.stringify(info), { httpMetadata: { contentType: "application/json" } });
  }
  infoCache.set(digest, info);
  return { ok: true, info, created: !existing };
}

export async function moduleInfo(env: Env, digest: string): Promise<ModuleInfo | null> {
  const cached = infoCache.get(digest);
  if (cached) return cached;
  const obj = await env.MODULES.get(moduleInfoKey(digest));
  if (!obj) return null;
  const info = (await obj.json()) as ModuleInfo;
  if (infoCache.size > 1_000) infoCache.clear();
  infoCache.set(digest, info);
  return info;
}

export function moduleBinary(env: Env, digest: string) {
  return env.MODULES.get(moduleBinaryKey(digest));
}
