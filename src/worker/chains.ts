/**
 * A chain as the API shows it: from a step, every step after it with its
 * state, following the links each step records when it hands its output on.
 */
import { chainState } from "../core/calls.js";
import { DEPLOYMENT_LIMITS } from "../protocol/deployment.js";
import { deviceOfJob } from "../protocol/ids.js";
import type { ChainView, JobView } from "../protocol/job.js";
import { deviceStub } from "../platform/stubs.js";
import type { Env } from "../platform/env.js";

/** `namespace`: the caller's (null: a key spanning all); a step on another tenant's device is not shown. */
export async function chainFrom(env: Env, namespace: string | null, first: JobView): Promise<ChainView> {
  const steps: ChainView["steps"] = [];
  let job: JobView | null = first;
  let complete = false;
  while (job && steps.length < DEPLOYMENT_LIMITS.maxChainSteps) {
    steps.push({ job: job.id, device: job.device, url: null, state: job.state, error: job.error?.message ?? null });
    const next: JobView["next"] = job.next;
    if (!job.call?.hasNext || job.state !== "SUCCEEDED") {
      complete = job.state === "SUCCEEDED" || job.state === "FAILED";
      break;
    }
    if (!next) break; // handing on: the chain is still running
    if (next.error) {
      steps.push({ job: null, device: null, url: null, state: "ERROR", error: next.error });
      break;
    }
    if (!next.job) {
      // Handed to a supervisor outside: its result is at that URL.
      steps.push({ job: null, device: null, url: next.url ?? null, state: "FORWARDED", error: null });
      complete = true;
      break;
    }
    const out: Awaited<ReturnType<typeof fetchJob>> = await fetchJob(env, namespace, next.job);
    job = out.ok ? out.value : null;
  }
  const states = steps.map((s) => s.state);
  return { state: states.at(-1) === "FORWARDED" ? "succeeded" : chainState(states, complete), steps };
}

const fetchJob = (env: Env, namespace: string | null, id: string) => deviceStub(env, deviceOfJob(id)).getJob(namespace, id);
