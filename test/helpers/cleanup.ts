import { afterEach } from "vitest";

/**
 * What a test started and has to stop: push a function that stops it. After each test they run,
 * the newest first, each one's failure ignored (a process the test already killed, say).
 */
export function cleanupAfterEach(): (() => Promise<unknown>)[] {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
  });
  return cleanup;
}
