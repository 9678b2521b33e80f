/**
 * What Linux says about a process, from /proc: whether it is (still) the process we
 * started (its start time, so a reused pid is not mistaken for it), whether it is a
 * zombie, its CPU time and resident memory. Elsewhere (no /proc) only `kill(pid, 0)` is known.
 */
import { readFileSync } from "node:fs";

/** clock ticks per second of /proc's times (USER_HZ: 100 on Linux). */
const TICKS_PER_SECOND = 100;
const PAGE_BYTES = 4096;

export interface ProcSample {
  /** the process's start time (ticks since boot): names it together with its pid */
  startTime: string;
  /** R, S, D, T (stopped), Z (zombie), ... */
  state: string;
  cpuMs: number;
  rssBytes: number;
}

export function sample(pid: number): ProcSample | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces: fields after the last ")".
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state); field n is rest[n - 3].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return { state: rest[0]!, startTime: rest[19]!, cpuMs: ((utime + stime) * 1000) / TICKS_PER_SECOND, rssBytes: Number(rest[21]) * PAGE_BYTES };
}

/** Whether `pid` is alive and (when `startTime` is known) the same process as before. A zombie is not alive. */
export function alive(pid: number, startTime: string | null): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const s = sample(pid);
  if (!s) return process.platform !== "linux"; // no /proc: kill(0) is all we know
  if (s.state === "Z" || s.state === "X") return false;
  return startTime === null || s.startTime === startTime;
}

export function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}
