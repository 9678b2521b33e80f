/**
 * Where a service lives on the device, and the files the agent and the service's child
 * process share: `<dataDir>/services/<name>/` holds state.json (the agent's record,
 * written atomically), run.json (what the child runs), output.log (+ .1, rotated by the
 * child: one JSON line per output line), exit.json (how the run ended, written by the
 * child before it exits) and sandbox/ (the service's own "." unless it uses a deployment's).
 */
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LogLine } from "../../protocol/job.js";

export const servicesRoot = (dataDir: string) => join(dataDir, "services");
export const serviceDir = (dataDir: string, name: string) => join(servicesRoot(dataDir), name);

export const FILES = {
  state: "state.json",
  run: "run.json",
  output: "output.log",
  exit: "exit.json",
  child: "child.log",
} as const;

/** The output file is rotated (to output.log.1) past this size: a service's output on disk stays bounded. */
export const OUTPUT_ROTATE_BYTES = 256 * 1024;

/** What the child runs (written by the agent before it spawns it). */
export interface RunConfig {
  name: string;
  run: number;
  dataDir: string;
  digest: string;
  entry: string;
  args: (string | number | boolean)[];
  env: Record<string, string>;
  sandboxDir: string;
  maxMemoryMb: number;
  maxOutputBytes: number;
}

/** How a run ended, as the child saw it (absent: it was killed, or died before it could say). */
export interface ExitReport {
  run: number;
  pid: number;
  at: number;
  ok: boolean;
  exitCode: number | null;
  kind: string | null;
  message: string | null;
}

/** Writes JSON so that a reader (or a crash in the middle) never sees half a file. */
/** Written readable by the agent's user only (0600): run files hold environment values passed to guests. */
export async function writeJsonAtomic(path: string, value: unknown) {
  const tmp = `${path}.${process.pid}.tmp`;
  await rm(tmp, { force: true }); // a leftover keeps its own mode
  await writeFile(tmp, JSON.stringify(value), { mode: 0o600 });
  await rename(tmp, path);
}

export function writeJsonAtomicSync(path: string, value: unknown) {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value), { mode: 0o600 });
  renameSync(tmp, path);
}

export async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as T;
  } catch {
    return null;
  }
}

export function readJsonSync<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return null;
  }
}

export async function ensureDir(path: string) {
  await mkdir(path, { recursive: true });
}

export async function removeDir(path: string) {
  await rm(path, { recursive: true, force: true });
}

export function parseOutputLine(text: string): LogLine | null {
  try {
    const l = JSON.parse(text) as LogLine;
    return typeof l.line === "string" && typeof l.at === "number" ? l : null;
  } catch {
    return null;
  }
}
