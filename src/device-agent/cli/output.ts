/** How the CLI speaks: tables for people, JSON for scripts, exit codes both can trust. */

/** 0 ok; 1 the job ended unsuccessfully; 2 usage; 3 refused by the control plane (4xx); 4 unreachable or 5xx. */
export const EXIT = { ok: 0, jobFailed: 1, usage: 2, refused: 3, unavailable: 4 } as const;

export function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cell = (v: unknown) => (v === null || v === undefined ? "-" : typeof v === "object" ? JSON.stringify(v) : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join("\n");
}

export function print(json: boolean, value: unknown, human: () => string) {
  process.stdout.write((json ? JSON.stringify(value, null, 2) : human()) + "\n");
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
