/**
 * Downloads a job needs before it runs (its module, a deployed call's input files) are tried again
 * when the link broke them (a cut connection, a 5xx, a 408 or a 429), on the agent's backoff, while
 * the lease keeper keeps the job's lease: a blip of the link does not fail the attempt, which the
 * object would retry by running the job again. A refusal (any other 4xx) is not tried again.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { ApiError } from "./api-client.js";
import { agentBackoffMs } from "./agent-backoff.js";

export interface RetryPolicy {
  tries: number;
  /** the wait before try `n + 1` after `n` failed */
  delayMs: (failures: number) => number;
}

/** 5 tries: waits of about 0.5, 1, 2 and 4 s between them. */
export const DOWNLOAD_RETRY: RetryPolicy = { tries: 5, delayMs: agentBackoffMs };

export async function retryTransient<T>(fn: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  for (let failures = 0; ; ) {
    try {
      return await fn();
    } catch (e) {
      failures++;
      if ((e instanceof ApiError && e.permanent) || failures >= policy.tries) throw e;
      await sleep(policy.delayMs(failures));
    }
  }
}
