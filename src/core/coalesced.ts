/**
 * One run at a time of an idempotent step (a convergence to desired state): a request that
 * comes while a run is on its way asks for one more pass after it, and its promise settles
 * when the passes end, so a caller never sees a state older than its own request. Any number
 * of requests during one run make one extra pass, not one each.
 */
export function coalesced(step: () => Promise<void>): () => Promise<void> {
  let inFlight: Promise<void> | null = null;
  let again = false;
  return () => {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = (async () => {
      try {
        do {
          again = false;
          await step();
        } while (again);
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  };
}
