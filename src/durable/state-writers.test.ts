/**
 * The job life cycle (job-lifecycle.ts) is the only code that writes a job's state: no other
 * file under src/ inserts jobs or updates their `state` column. (Tests may seed rows.)
 */
import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const LIFECYCLE = "durable/job-lifecycle.ts";
/** The job index keeps its own copy of each job's listing row, written only from the device objects' feeds. */
const INDEX_COPY = "durable/job-index-object.ts";

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [path] : [];
  });
}

/** SQL that creates a job or sets its state: INSERT INTO jobs, or an UPDATE of jobs whose SET names `state`. */
const STATE_WRITE = /INSERT\s+INTO\s+jobs\b|UPDATE\s+jobs\s+SET\s[^`"]*?\bstate\s*=/gi;

describe("job state writers", () => {
  it("only the life cycle inserts jobs or sets their state", () => {
    const writers = sources(SRC)
      .map((file) => ({ file: relative(SRC, file), writes: readFileSync(file, "utf8").match(STATE_WRITE)?.length ?? 0 }))
      .filter((f) => f.writes > 0 && f.file !== INDEX_COPY)
      .map((f) => f.file);
    expect(writers).toEqual([LIFECYCLE]);
  });
});
