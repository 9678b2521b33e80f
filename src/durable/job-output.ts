/**
 * A device object's store of job output: lines with timestamps, bounded per job
 * (a last line marks the truncation), and the clients following them live over
 * server-sent events until the job ends.
 */
import { LIMITS, type JobLogs, type JobState, type LogLine } from "../protocol/job.js";
import type { Sql } from "./sql-object.js";
import type { Clock } from "../core/clock.js";

type Writer = WritableStreamDefaultWriter<Uint8Array>;
type StoredLine = LogLine & { seq: number };

export class JobOutput {
  private readonly followers = new Map<string, Set<Writer>>();

  constructor(private readonly sql: Sql, private readonly clock: Clock) {}

  /** Appends lines in order; answers how many were kept. */
  append(jobId: string, lines: LogLine[]): number {
    let seq = this.sql.one<{ n: number | null }>("SELECT MAX(seq) AS n FROM job_logs WHERE job_id = ?", jobId)?.n ?? 0;
    if (seq > LIMITS.maxLogLines) return 0; // already marked truncated
    const kept = lines.slice(0, Math.max(0, LIMITS.maxLogLines - seq));
    const rows: StoredLine[] = [];
    const insert = (l: LogLine) => {
      seq++;
      this.sql.run`INSERT INTO job_logs (job_id, seq, at, stream, line) VALUES (${jobId}, ${seq}, ${l.at}, ${l.stream}, ${l.line})`;
      rows.push({ ...l, seq });
    };
    kept.forEach(insert);
    if (kept.length < lines.length) insert({ at: this.clock.now(), stream: "stderr", line: `[wasmvisor] output truncated after ${LIMITS.maxLogLines} lines` });
    const followers = this.followers.get(jobId);
    if (followers) for (const row of rows) this.event(followers, "line", row, row.seq);
    return kept.length;
  }

  read(jobId: string, done: boolean): JobLogs {
    const lines = this.sql.all<StoredLine>("SELECT seq, at, stream, line FROM job_logs WHERE job_id = ? ORDER BY seq", jobId);
    return { lines, truncated: lines.length > LIMITS.maxLogLines, done };
  }

  /** An event stream of the lines so far, then new ones, then `end` (at once when the job has ended: `endedAs`). */
  follow(jobId: string, endedAs: JobState | null): ReadableStream<Uint8Array> {
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const writer = writable.getWriter();
    const one = new Set([writer]);
    for (const l of this.read(jobId, endedAs !== null).lines) this.event(one, "line", l, l.seq);
    if (endedAs !== null) {
      this.event(one, "end", { state: endedAs });
      void writer.close().catch(() => undefined);
    } else {
      const set = this.followers.get(jobId) ?? new Set();
      set.add(writer);
      this.followers.set(jobId, set);
      // A client that goes away makes writes fail; drop it then.
      writer.closed.catch(() => set.delete(writer));
    }
    return readable;
  }

  /** The job ended: followers get `end` and their streams close. */
  end(jobId: string, state: JobState) {
    const followers = this.followers.get(jobId);
    if (!followers) return;
    this.followers.delete(jobId);
    this.event(followers, "end", { state });
    for (const w of followers) void w.close().catch(() => undefined);
  }

  remove(jobId: string) {
    this.sql.run("DELETE FROM job_logs WHERE job_id = ?", jobId);
  }

  private event(writers: Set<Writer>, event: string, data: unknown, id?: number) {
    const bytes = new TextEncoder().encode(`${id !== undefined ? `id: ${id}\n` : ""}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    for (const w of writers) w.write(bytes).catch(() => writers.delete(w));
  }
}
