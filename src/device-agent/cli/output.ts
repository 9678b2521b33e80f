/** How the CLI speaks: tables for people, JSON for scripts, exit codes both can trust. */
import { readFileSync } from "node:fs";

/** 0 ok; 1 the job ended unsuccessfully; 2 usage; 3 refused by the control plane (4xx); 4 unreachable or 5xx. */
export const EXIT = { ok: 0, jobFailed: 1, usage: 2, refused: 3, unavailable: 4 } as const;

/**
 * Columns are named by the API's own field names; every table derives its headers
 * the same way (`createdAt` -> CREATED, `lastSeenAt` -> LAST SEEN), so commands agree.
 */
export const columnHeader = (field: string) => field.replace(/At$/, "").replace(/([a-z0-9])([A-Z])/g, "$1 $2").toUpperCase();

export function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cell = (v: unknown) => (v === null || v === undefined ? "-" : typeof v === "object" ? JSON.stringify(v) : String(v));
  const headers = columns.map(columnHeader);
  const widths = columns.map((c, i) => Math.max(headers[i]!.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(headers), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join("\n");
}

/** A mistake in a local file or argument: exit 2 (usage), naming the file. */
export class UsageError extends Error {}

/** Reads a file the user named; a missing or unreadable one is a usage error that says which and why. */
export function readInputFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "it is a directory" : String((e as Error).message);
    throw new UsageError(`cannot read ${what} ${path}: ${why}`);
  }
}

/** Reads and parses a JSON file the user named; bad JSON is a usage error naming the file and the parser's complaint. */
export function readJsonFile<T = unknown>(path: string, what: string): T {
  const text = readInputFile(path, what).toString("utf8");
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new UsageError(`${what} ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** How a command prints: tables for people, `--json` for scripts, `-q` only the ids (one per line) for shell variables. */
export type Output = { json: boolean; quiet: boolean };

/** `ids` says what `-q` prints; without it, `-q` prints what a person would see. */
export function print(out: Output, value: unknown, human: () => string, ids?: () => string[]) {
  const text = out.json ? JSON.stringify(value, null, 2) : out.quiet && ids ? ids().join("\n") : human();
  if (text !== "") process.stdout.write(text + "\n");
}

/** A spinner on stderr while waiting, only when a person is watching. */
export async function withProgress<T>(label: string, work: Promise<T>): Promise<T> {
  if (!process.stderr.isTTY) return work;
  const frames = "|/-\\";
  let i = 0;
  const started = Date.now();
  const timer = setInterval(() => {
    process.stderr.write(`\r${frames[i++ % frames.length]} ${label} (${((Date.now() - started) / 1000).toFixed(0)}s)`);
  }, 100);
  try {
    return await work;
  } finally {
    clearInterval(timer);
    process.stderr.write("\r\x1b[K");
  }
}

/** Turns any failure into a message on stderr and the right exit code. */
export function fail(e: unknown): never {
  if (e instanceof UsageError) {
    process.stderr.write(`error: ${e.message}\n`);
    process.exit(EXIT.usage);
  }
  // Matched by shape, not class, so this module need not load the SDK.
  const err = e as { message?: string; status?: number; problem?: unknown; code?: unknown };
  if (typeof err?.status === "number" && err.problem !== undefined) {
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(err.status >= 500 ? EXIT.unavailable : EXIT.refused);
  }
  if (typeof err?.code === "number") {
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(EXIT.refused);
  }
  process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(EXIT.unavailable);
}

/** A command-line argument as a job argument: whole numbers stay exact (large ones as decimal strings). */
export function parseArg(raw: string): number | string | boolean {
  if (raw === "true" || raw === "false") return raw === "true";
  if (/^-?\d+$/.test(raw)) return Number.isSafeInteger(Number(raw)) ? Number(raw) : raw;
  if (raw.trim() !== "" && !Number.isNaN(Number(raw))) return Number(raw);
  return raw;
}
