/**
 * The generated-client tool folder (test/generated-client): openapi-typescript needs
 * TypeScript 5's compiler API and this project builds with TypeScript 7, so the folder has
 * its own package.json and lock, installed here with `npm ci --prefix` when a test needs it
 * (and again only when its lock changes).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const TOOL_DIR = resolve("test/generated-client");
const STAMP = join(TOOL_DIR, "node_modules", ".installed-lock-sha256");

export type Run = { code: number; output: string };

function run(command: string, args: string[], timeoutMs: number): Promise<Run> {
  return new Promise((done) => {
    execFile(command, args, { cwd: TOOL_DIR, timeout: timeoutMs, maxBuffer: 16 << 20, env: { ...process.env, NO_COLOR: "1" } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      done({ code, output: `${stdout}${stderr}${error && code === 1 && !stdout && !stderr ? String(error) : ""}` });
    });
  });
}

const must = async (what: string, r: Promise<Run>) => {
  const out = await r;
  if (out.code !== 0) throw new Error(`${what} failed (exit ${out.code}):\n${out.output}`);
  return out;
};

/** `npm ci` in the tool folder, unless its node_modules was installed from this very lock. */
export async function installTools(): Promise<void> {
  const lock = createHash("sha256").update(readFileSync(join(TOOL_DIR, "package-lock.json"))).digest("hex");
  if (existsSync(STAMP) && readFileSync(STAMP, "utf8") === lock) return;
  await must("npm ci in test/generated-client", run("npm", ["ci", "--no-audit", "--no-fund", "--prefix", TOOL_DIR], 300_000));
  writeFileSync(STAMP, lock);
}

/** Types from a document (a URL or a file) with openapi-typescript, into `<dir>/generated/api.ts` (a .ts, so that skipLibCheck does not skip it). */
export const generateTypes = (source: string, dir = TOOL_DIR) =>
  must("openapi-typescript", run(process.execPath, [join(TOOL_DIR, "generate.mjs"), source, join(dir, "generated", "api.ts")], 120_000));

/** The client program checked against the generated types with the folder's TypeScript 5 (`tsc --noEmit`). */
export const typecheck = (dir = TOOL_DIR): Promise<Run> => run(process.execPath, [join(TOOL_DIR, "node_modules", "typescript", "bin", "tsc"), "-p", dir], 120_000);

/** A copy of the client program in `out/<name>`, to check it against another document. */
export function programCopy(name: string): string {
  const dir = join(TOOL_DIR, "out", name);
  mkdirSync(dir, { recursive: true });
  for (const f of ["client.ts", "tsconfig.json"]) copyFileSync(join(TOOL_DIR, f), join(dir, f));
  return dir;
}
