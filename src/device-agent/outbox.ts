/**
 * Results wait here until the control plane has acknowledged them. Reports are
 * batched; while the control plane cannot be reached they are also written to
 * disk, so a restart during an outage does not lose them. On the normal path
 * nothing touches the disk: a result lost to a crash before it was sent is not
 * lost work, since the job's lease expires and the job is delivered again.
 */
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ResultReport } from "../protocol/agent.js";
import { ApiError } from "./api-client.js";

export interface OutboxLog {
  (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>): void;
}

export class Outbox {
  private pending: ResultReport[] = [];
  private flushing: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private persisted = false;
  private readonly file: string;

  constructor(dataDir: string, private readonly send: (batch: ResultReport[]) => Promise<unknown>, private readonly log: OutboxLog, private readonly maxBatch = 256) {
    this.file = join(dataDir, "outbox.json");
  }

  get size() {
    return this.pending.length;
  }

  async restore() {
    const saved = await readFile(this.file, "utf8").catch(() => null);
    if (!saved) return;
    const reports = JSON.parse(saved) as ResultReport[];
    this.pending.push(...reports);
    this.persisted = true;
    this.log("info", "restored unsent results", { count: reports.length });
    this.flush();
  }

  add(report: ResultReport) {
    this.pending.push(report);
    this.flush();
  }

  /** Sends everything pending; concurrent calls share one in-flight send per batch. */
  flush(): Promise<void> {
    if (this.flushing || this.retryTimer) return this.flushing ?? Promise.resolve();
    this.flushing = (async () => {
      await Promise.resolve(); // let reports finishing in the same tick join the batch
      while (this.pending.length > 0) {
        const batch = this.pending.slice(0, this.maxBatch);
        try {
          await this.send(batch);
          this.pending.splice(0, batch.length);
          this.failures = 0;
        } catch (e) {
          if (e instanceof ApiError && e.permanent) {
            // The control plane refused the batch itself (not a network problem): retrying cannot help.
            this.log("error", "results refused by the control plane; dropping them (their leases will expire and the jobs rerun)", { error: String(e), count: batch.length });
            this.pending.splice(0, batch.length);
            continue;
          }
          this.failures++;
          const delay = Math.min(30_000, 250 * 2 ** Math.min(this.failures, 7));
          this.log("warn", "could not send results; will retry", { error: String(e), pending: this.pending.length, retryInMs: delay });
          await this.persist();
          this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            void this.flush();
          }, delay);
          return;
        }
      }
      if (this.persisted) await this.persist();
    })().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  /** Writes what is pending (or removes the file when nothing is). */
  async persist() {
    if (this.pending.length === 0) {
      await rm(this.file, { force: true });
      this.persisted = false;
      return;
    }
    const tmp = `${this.file}.tmp`;
    await writeFile(tmp, JSON.stringify(this.pending));
    await rename(tmp, this.file);
    this.persisted = true;
  }

  stop() {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
}
