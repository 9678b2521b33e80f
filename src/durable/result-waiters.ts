/**
 * Result waiters: callers blocked until a job ends (create-and-wait, GET ?wait=), held in
 * memory. The life cycle tells them when a job ends; the rest time out with the job as it stands.
 */
import type { JobView } from "../protocol/job.js";

export type Waited = { done: boolean; job: JobView };

export class ResultWaiters {
  private readonly waiting = new Map<string, Set<(view: JobView) => void>>();

  /** Whether anyone waits for this job (the end then reads the row back for them). */
  has(jobId: string): boolean {
    return this.waiting.has(jobId);
  }

  /** Waits for a job known to exist and not to have ended; `current` reads it when the wait runs out. */
  wait(jobId: string, waitMs: number, current: () => JobView): Promise<Waited> {
    return new Promise((resolve) => {
      const waiters = this.waiting.get(jobId) ?? new Set();
      this.waiting.set(jobId, waiters);
      const finish = (job: JobView, done: boolean) => {
        clearTimeout(timer);
        waiters.delete(onDone);
        if (waiters.size === 0) this.waiting.delete(jobId);
        resolve({ done, job });
      };
      const onDone = (job: JobView) => finish(job, true);
      const timer = setTimeout(() => finish(current(), false), waitMs);
      waiters.add(onDone);
    });
  }

  /** The job ended: everyone waiting for it gets this view. */
  ended(jobId: string, view: JobView) {
    const waiters = this.waiting.get(jobId);
    if (waiters) for (const w of [...waiters]) w(view);
  }
}
