/**
 * Results wait here until the control plane has acknowledged them. Reports are
 * batched; while the control plane cannot be reached (a send failed, or the
 * agent says the link is down) they are written to disk as they come, with the
 * health samples and the agent's own log lines of that time (store and
 * forward), so a power loss during an outage loses none of them. On the normal
 * path nothing touches the disk: a result lost to a crash before it was sent is
 * not lost work, since the job's lease expires and the job is delivered again.
 *
 * The file is replaced atomically (write a temporary file, fsync it, rename it
 * over the old one, fsync the directory): after a power loss it is either the
 * old or the new content, never a torn one. It lives under a quota
 * (`quotaBytes`): past it, the oldest health samples are dropped first, then the
 * oldest log lines; results are never dropped. When results alone exceed the
 * quota they are all kept (the file grows past it) and `overQuota` says so: the
 * agent then takes no new jobs until they are delivered, so the file stops
 * growing at the jobs already in hand.
 *
 * Nothing the control plane answers makes a report go away unacknowledged:
 * batches are sized to the request body limit (in bytes, not only in count), a
 * 413 shrinks that size and sends again, any other refusal is retried with
 * backoff (moving the refused report behind the others, so it cannot hold them
 * up), and a single report too large for any request is cut to fit (its
 * output trimmed and marked truncated) instead of being dropped.
 */
import { readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { removeFileDurably, writeFileAtomic } from "./durable-file.js";
import { LIMITS } from "../protocol/job.js";
import type { AgentLogLine, ResultReport } from "../protocol/agent.js";
import type { Health } from "../protocol/device.js";
import { ApiError } from "./api-client.js";
import { agentBackoffMs } from "./agent-backoff.js";

export interface OutboxLog {
  (level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>): void;
}

export interface OutboxOptions {
  /** the request body limit results travel under (learned from GET /v1/info; the protocol's by default) */
  maxBatchBytes?: number;
  /** reports per batch at most (the protocol's limit) */
  maxBatch?: number;
  /** delay before the next try after `failures` failures in a row */
  retryDelayMs?: (failures: number) => number;
  /** the most the outbox file may hold, in bytes of JSON (see the overflow policy above) */
  quotaBytes?: number;
}

/** A health sample taken while the control plane could not be reached. */
export type HealthSample = { at: number; health: Health };
/** What the outbox file holds. */
type Saved = { v: 2; results: ResultReport[]; logs: AgentLogLine[]; health: HealthSample[] };

export const DEFAULT_OUTBOX_QUOTA_BYTES = 16 * 1024 * 1024;
/** The message of a health sample delivered late, as one of the agent's log lines. */
export const HEALTH_SAMPLE_MSG = "health while the control plane was away";

/** Room kept for the batch's envelope ({"results":[...]}, or the WebSocket message's own fields). */
const ENVELOPE_BYTES = 512;
/** A 413 halves the batch budget, down to this: a server refusing less than this is retried with backoff. */
const MIN_BATCH_BYTES = 16 * 1024;

const jsonBytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v), "utf8");
/** The agent's backoff at its upper bound (no jitter): one outbox per agent, nothing to spread out. */
const defaultRetryDelay = (failures: number) => agentBackoffMs(failures, 1);

export class Outbox {
  private pending: ResultReport[] = [];
  /** the agent's own log lines and health samples of an outage, oldest first, waiting for a heartbeat */
  private logs: AgentLogLine[] = [];
  private health: HealthSample[] = [];
  /** the link is down (a send failed, or the agent said so): everything kept is written at once */
  private offline = false;
  private writing: Promise<void> = Promise.resolve();
  private readonly quotaBytes: number;
  /** results alone exceed the quota: the agent takes no new jobs until they are delivered */
  overQuota = false;
  private flushing: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private persisted = false;
  /** fenced: this process no longer speaks for the device; nothing more is sent or written */
  private abandoned = false;
  private readonly file: string;
  private maxBatchBytes: number;
  /** lowered after a refused batch (so the others get through), raised again after a success */
  private countLimit: number;
  private readonly maxBatch: number;
  private readonly retryDelay: (failures: number) => number;

  constructor(dataDir: string, private readonly send: (batch: ResultReport[]) => Promise<unknown>, private readonly log: OutboxLog, opts: OutboxOptions = {}) {
    this.file = join(dataDir, "outbox.json");
    this.maxBatchBytes = opts.maxBatchBytes ?? LIMITS.maxJsonBodyBytes;
    this.maxBatch = opts.maxBatch ?? LIMITS.maxPollBatch;
    this.countLimit = this.maxBatch;
    this.retryDelay = opts.retryDelayMs ?? defaultRetryDelay;
    this.quotaBytes = opts.quotaBytes ?? DEFAULT_OUTBOX_QUOTA_BYTES;
  }

  /** The agent learned the link's state (a failed or answered request, a socket opened or lost). */
  setOffline(offline: boolean) {
    this.offline = offline;
    // Results already waiting go to disk now: the outage may outlast the process.
    if (offline && !this.persisted && this.pending.length > 0) void this.persist();
  }

  /** Health samples and log lines waiting for a heartbeat. */
  get backlogSize() {
    return this.logs.length + this.health.length;
  }

  /**
   * A heartbeat could not be sent: its health sample and the log lines it carried are kept (on disk,
   * under the quota) until one can.
   */
  keepWhileAway(sample: HealthSample, logs: AgentLogLine[]) {
    if (this.abandoned) return;
    this.offline = true;
    this.health.push(sample);
    this.logs.push(...logs);
    void this.persist();
  }

  /**
   * Up to `max` lines for the next heartbeat, oldest first: the kept log lines and health samples (a
   * sample as a line whose fields are the health). `backlogShipped` removes them once it was answered.
   */
  backlog(max: number): AgentLogLine[] {
    const merged = [
      ...this.logs.map((l) => ({ at: l.at, line: l })),
      ...this.health.map((h) => ({ at: h.at, line: { at: h.at, level: "info" as const, msg: HEALTH_SAMPLE_MSG, fields: JSON.stringify(h.health).slice(0, 2000) } })),
    ].sort((a, b) => a.at - b.at);
    return merged.slice(0, max).map((m) => m.line);
  }

  /** The control plane has the first `count` lines `backlog` gave: they leave the outbox. */
  backlogShipped(count: number) {
    const shipped = this.backlog(count);
    const healthAts = new Set(shipped.filter((l) => l.msg === HEALTH_SAMPLE_MSG).map((l) => l.at));
    const lines = new Set(shipped);
    this.logs = this.logs.filter((l) => !lines.has(l));
    this.health = this.health.filter((h) => !healthAts.has(h.at));
    if (count > 0 && this.persisted) void this.persist();
  }

  get size() {
    return this.pending.length;
  }

  /** The control plane said how large a request body may be. */
  setBodyLimit(bytes: number) {
    if (Number.isFinite(bytes) && bytes > 0) this.maxBatchBytes = Math.max(MIN_BATCH_BYTES, bytes);
  }

  async restore() {
    const text = await readFile(this.file, "utf8").catch(() => null);
    if (!text) return;
    let saved: Saved;
    try {
      const parsed = JSON.parse(text) as Saved | ResultReport[];
      saved = Array.isArray(parsed) ? { v: 2, results: parsed, logs: [], health: [] } : parsed; // an older agent's file: results only
    } catch (e) {
      // Cannot happen with the atomic write, short of a disk fault: keep the file for a human, start empty.
      this.log("error", "the outbox file is unreadable; set aside", { file: this.file, error: String(e) });
      await rename(this.file, `${this.file}.unreadable-${Date.now()}`).catch(() => undefined);
      return;
    }
    this.pending.push(...saved.results);
    this.logs.push(...saved.logs);
    this.health.push(...saved.health);
    this.persisted = true;
    this.log("info", "restored unsent results", { count: saved.results.length, logLines: saved.logs.length, healthSamples: saved.health.length });
    this.enforceQuota();
    // Not sent from here: the agent flushes once its session is open (a report without one would be refused).
  }

  /**
   * The job was delivered again under a new lease while its result waits here: the result quotes the
   * new lease from now on (under the old one it would be refused as stale and the job run again).
   * Answers whether a result for the job was waiting.
   */
  retoken(jobId: string, leaseToken: string): boolean {
    const i = this.pending.findIndex((r) => r.jobId === jobId);
    if (i < 0) return false;
    this.pending[i] = { ...this.pending[i]!, leaseToken };
    return true;
  }

  add(report: ResultReport) {
    this.pending.push(report);
    // While the link is down, on disk at once: a power loss before the next try must not lose it.
    if (this.offline || this.persisted) void this.persist();
    void this.flush();
  }

  /** Sends everything pending; concurrent calls share one in-flight send per batch. */
  flush(): Promise<void> {
    if (this.abandoned) return Promise.resolve();
    if (this.flushing || this.retryTimer) return this.flushing ?? Promise.resolve();
    this.flushing = (async () => {
      await Promise.resolve(); // let reports finishing in the same tick join the batch
      while (this.pending.length > 0) {
        const batch = this.nextBatch();
        try {
          await this.send(batch);
        } catch (e) {
          if (this.refusedAsTooLarge(e, batch)) continue;
          await this.retryLater(e, batch);
          return;
        }
        const sent = new Set(batch);
        this.pending = this.pending.filter((r) => !sent.has(r));
        this.offline = false;
        this.log("debug", "results delivered", { count: batch.length, jobIds: batch.map((r) => r.jobId) });
        this.failures = 0;
        this.countLimit = Math.min(this.maxBatch, this.countLimit * 2);
      }
      if (this.persisted) await this.persist();
    })().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  /** The first pending reports that fit in one request together (at least one, cut to fit if it must be). */
  private nextBatch(): ResultReport[] {
    const budget = this.maxBatchBytes - ENVELOPE_BYTES;
    const batch: ResultReport[] = [];
    let bytes = 0;
    for (let i = 0; i < this.pending.length && batch.length < this.countLimit; i++) {
      const report = fitReport(this.pending[i]!, budget);
      this.pending[i] = report; // kept cut: what is persisted is what will be sent
      const size = jsonBytes(report) + 1;
      if (batch.length > 0 && bytes + size > budget) break;
      batch.push(report);
      bytes += size;
    }
    return batch;
  }

  /** A 413: the server's limit is below what we thought. Shrink and send again at once (true), or give up on shrinking (false). */
  private refusedAsTooLarge(e: unknown, batch: ResultReport[]): boolean {
    if (!(e instanceof ApiError) || e.status !== 413 || this.maxBatchBytes <= MIN_BATCH_BYTES) return false;
    this.maxBatchBytes = Math.max(MIN_BATCH_BYTES, Math.floor(this.maxBatchBytes / 2));
    this.log("warn", "results batch over the control plane's body limit; sending smaller batches", { count: batch.length, maxBatchBytes: this.maxBatchBytes });
    return true;
  }

  private async retryLater(e: unknown, batch: ResultReport[]) {
    this.failures++;
    if (!(e instanceof ApiError && e.permanent)) this.offline = true;
    if (e instanceof ApiError && e.permanent) {
      // Refused as such (not a network problem): the others must not wait behind it. Smaller batches
      // isolate the refused report; a lone refused one goes to the back of the queue, still kept.
      if (batch.length > 1) this.countLimit = Math.max(1, Math.ceil(batch.length / 2));
      else this.pending = [...this.pending.filter((r) => r !== batch[0]), batch[0]!];
    }
    const delay = this.retryDelay(this.failures);
    this.log("warn", "could not send results; will retry", { error: String(e), pending: this.pending.length, retryInMs: delay });
    await this.persist();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.flush();
    }, delay);
  }

  /**
   * Drops what the quota has no room for: the oldest health samples first, then the oldest log lines;
   * never results. Answers the bytes the file will hold.
   */
  private enforceQuota(): number {
    let bytes = jsonBytes(this.saved());
    let droppedHealth = 0;
    let droppedLogs = 0;
    while (bytes > this.quotaBytes && (this.health.length > 0 || this.logs.length > 0)) {
      if (this.health.length > 0) {
        bytes -= jsonBytes(this.health.shift()) + 1;
        droppedHealth++;
      } else {
        bytes -= jsonBytes(this.logs.shift()) + 1;
        droppedLogs++;
      }
    }
    if (droppedHealth + droppedLogs > 0) this.log("warn", "outbox over its quota: dropped the oldest health samples and log lines", { droppedHealth, droppedLogs, quotaBytes: this.quotaBytes });
    const over = bytes > this.quotaBytes;
    if (over !== this.overQuota) {
      this.overQuota = over;
      if (over) this.log("error", "results alone exceed the outbox quota: all are kept, and no new jobs are taken until they are delivered", { results: this.pending.length, bytes, quotaBytes: this.quotaBytes });
      else this.log("info", "the outbox is back under its quota; taking jobs again", { bytes, quotaBytes: this.quotaBytes });
    }
    return bytes;
  }

  private saved(): Saved {
    return { v: 2, results: this.pending, logs: this.logs, health: this.health };
  }

  /**
   * Writes what is kept (or removes the file when nothing is), one write at a time, atomically: a
   * temporary file written and fsynced, renamed over the old one, and the directory fsynced (the
   * rename itself survives a power loss).
   */
  persist(): Promise<void> {
    this.writing = this.writing.then(() => this.write()).catch((e: unknown) => this.log("error", "could not write the outbox file", { file: this.file, error: String(e) }));
    return this.writing;
  }

  private async write() {
    if (this.abandoned) return; // the data dir may be another process's too: leave its file alone
    this.enforceQuota();
    if (this.pending.length === 0 && this.logs.length === 0 && this.health.length === 0) {
      if (this.persisted) await removeFileDurably(this.file);
      this.persisted = false;
      return;
    }
    await writeFileAtomic(this.file, JSON.stringify(this.saved()));
    this.persisted = true;
  }

  stop() {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** A newer agent session took the device over: send nothing more, write nothing more. */
  abandon() {
    this.abandoned = true;
    this.stop();
  }
}

/**
 * The report itself if it fits in `maxBytes` of JSON; else a copy cut to fit:
 * first the output lines it carries are dropped from the end (their text is in
 * stdout/stderr too, and a marker line says how many went), then stdout and
 * stderr are shortened (keeping their beginning) and marked truncated.
 */
export function fitReport(report: ResultReport, maxBytes: number): ResultReport {
  if (jsonBytes(report) <= maxBytes) return report;
  let cut: ResultReport = { ...report };
  if (report.logs.length > 0) {
    const marker = (dropped: number) => ({ at: Date.now(), stream: "stderr" as const, line: `[wasmvisor] ${dropped} output lines dropped to fit the result in one request` });
    const withoutLogs = jsonBytes({ ...report, logs: [marker(report.logs.length)] });
    let room = maxBytes - withoutLogs;
    let keep = 0;
    while (keep < report.logs.length) {
      const size = jsonBytes(report.logs[keep]) + 1;
      if (size > room) break;
      room -= size;
      keep++;
    }
    cut.logs = [...report.logs.slice(0, keep), marker(report.logs.length - keep)];
  }
  if (!cut.result) return cut;
  let result = { ...cut.result };
  for (let size = jsonBytes({ ...cut, result }); size > maxBytes && (result.stdout.length > 0 || result.stderr.length > 0); size = jsonBytes({ ...cut, result })) {
    // Cut the longer stream by its share of the excess (characters cost 1 to 6 bytes of JSON); repeat if that was not enough.
    const excess = size - maxBytes;
    const stream = result.stdout.length >= result.stderr.length ? "stdout" : "stderr";
    const text = result[stream];
    const keep = Math.max(0, Math.min(text.length - 1, Math.floor(text.length * (1 - excess / jsonBytes(text)))));
    result = { ...result, [stream]: text.slice(0, keep), [`${stream}Truncated`]: true };
  }
  cut = { ...cut, result };
  return cut;
}
