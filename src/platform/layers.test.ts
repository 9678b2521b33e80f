/**
 * Layers only point down: every relative import in src/ must name the importing file's own
 * layer or one below it. Order: protocol < core (and wasm) < platform < durable < worker.
 * The device agent and the SDK run outside the control plane: they may use protocol, core,
 * wasm and the SDK, never the platform, the objects or the Worker.
 */
import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Which top-level folders of src/ each folder may import from. */
const ALLOWED: Record<string, readonly string[]> = {
  protocol: ["protocol"],
  core: ["protocol", "core", "wasm"],
  wasm: ["protocol", "core", "wasm"],
  platform: ["protocol", "core", "wasm", "platform"],
  durable: ["protocol", "core", "wasm", "platform", "durable"],
  worker: ["protocol", "core", "wasm", "platform", "durable", "worker"],
  "device-agent": ["protocol", "core", "wasm", "sdk", "device-agent"],
  sdk: ["protocol", "core", "wasm", "sdk"],
};

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** Every module specifier a file names: static and dynamic imports, re-exports, `import type`, module augmentations. */
function specifiers(source: string): string[] {
  const patterns = [/\bfrom\s+["']([^"']+)["']/g, /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g, /^\s*import\s+["']([^"']+)["']/gm, /\bdeclare\s+module\s+["']([^"']+)["']/g];
  return patterns.flatMap((pattern) => [...source.matchAll(pattern)].map((m) => m[1]!));
}

const layerOf = (file: string) => relative(SRC, file).split(sep)[0]!;

function violations(): string[] {
  return tsFiles(SRC).flatMap((file) => {
    const from = layerOf(file);
    const allowed = ALLOWED[from];
    if (!allowed) return [`${relative(SRC, file)}: folder src/${from} has no place in the layer order`];
    return specifiers(readFileSync(file, "utf8"))
      .filter((spec) => spec.startsWith("."))
      .map((spec) => ({ spec, target: resolve(dirname(file), spec) }))
      // Tests may use the shared test helpers outside src/.
      .filter(({ target }) => !(file.endsWith(".test.ts") && relative(SRC, target).startsWith("..")))
      .map(({ spec, target }) => ({ spec, to: layerOf(target) }))
      .filter(({ to }) => !allowed.includes(to))
      .map(({ spec, to }) => `${relative(SRC, file)} (${from}) imports ${spec} (${to})`);
  });
}

describe("layers", () => {
  it("finds the files it checks", () => {
    expect(tsFiles(SRC).length).toBeGreaterThan(50);
  });

  it("no file in src/ imports from a layer above its own", () => {
    expect(violations()).toEqual([]);
  });
});
