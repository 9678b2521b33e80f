/**
 * The agent's one backoff: the project's shared retryDelayMs (exponential, equal jitter, capped)
 * with the agent's own pace, 0.5 s doubling up to 30 s. Registration, reconnects, polls and the
 * result outbox all wait by it, so a control plane that is down sees the same spacing from every path.
 */
import { retryDelayMs } from "../core/timing.js";

const AGENT_RETRY_BASE_MS = 500;
const AGENT_RETRY_CAP_MS = 30_000;

/** How long to wait after `failures` failures in a row (1 = the first); `random` in [0, 1] sets the jitter. */
export function agentBackoffMs(failures: number, random = Math.random()): number {
  return retryDelayMs(failures, random, AGENT_RETRY_BASE_MS, AGENT_RETRY_CAP_MS);
}
