/**
 * Long-lived answers (GET /v1/events, a service's log follow) end with their credential:
 *
 * - at the latest STREAM_MAX_MS (10 minutes) after they opened, or when the session cookie
 *   they were opened with expires, whichever is first;
 * - within a second when its session is logged out through this isolate, else within
 *   STREAM_RECHECK_MS (30 s) of the key being revoked, the session logged out, or the key
 *   behind a session revoked: the credential is checked afresh that often.
 *
 * The last thing sent is an SSE comment saying why; the stream then closes, so EventSource,
 * the SDK's `events()` (and `wasmvisor events`/`top` on it) reconnect with Last-Event-ID
 * and are authenticated again: a good credential resumes where it was, a revoked one gets 401.
 */
import type { Ctx } from "./http.js";
import { credentialStillValid } from "./auth.js";
import { sessionLoggedOutHere } from "./session.js";

export const STREAM_MAX_MS = 10 * 60_000;
export const STREAM_RECHECK_MS = 30_000;
/** How often a session's stream looks whether it was logged out through this isolate (a memory read, no I/O). */
const LOGOUT_LOOK_MS = 1_000;

const positive = (v: string | undefined, fallback: number) => {
  const n = Number(v);
  return v !== undefined && Number.isFinite(n) && n > 0 ? n : fallback;
};

const encoder = new TextEncoder();

/** `onEnd`: told once when the stream ends, however (its source frees what it held). */
export function guardStream(
  c: Ctx,
  body: ReadableStream<Uint8Array>,
  onEnd: () => Promise<unknown> = async () => undefined,
  resume = "reconnect with Last-Event-ID (and a valid credential)",
): ReadableStream<Uint8Array> {
  const principal = c.get("principal");
  const now = Date.now();
  const maxMs = positive(c.env.STREAM_MAX_MS, STREAM_MAX_MS);
  const sessionEnds = principal && principal.role !== "device" && principal.session ? principal.session.expiresAt : Infinity;
  const endsAt = Math.min(now + maxMs, sessionEnds);
  const recheckMs = positive(c.env.STREAM_RECHECK_MS, STREAM_RECHECK_MS);

  const reader = body.getReader();
  let reason: string | null = null;
  let wake!: () => void;
  const stopped = new Promise<null>((r) => (wake = () => r(null)));
  const stop = (why: string) => {
    if (reason !== null) return;
    reason = why;
    wake();
  };
  const deadline = setTimeout(() => stop("the stream reached its time limit"), Math.max(0, endsAt - now));
  const sessionId = principal && principal.role !== "device" && principal.session ? principal.session.id : null;
  const logoutWatch = sessionId ? setInterval(() => sessionLoggedOutHere(sessionId) && stop("the session was logged out"), LOGOUT_LOOK_MS) : undefined;
  let checking = false;
  const recheck = setInterval(() => {
    if (checking) return;
    checking = true;
    credentialStillValid(c)
      .then((ok) => ok || stop("the credential is no longer valid"))
      .catch(() => undefined)
      .finally(() => (checking = false));
  }, recheckMs);
  let ended = false;
  const cleanup = () => {
    clearTimeout(deadline);
    clearInterval(recheck);
    if (logoutWatch !== undefined) clearInterval(logoutWatch);
    if (ended) return;
    ended = true;
    const told = onEnd().catch(() => undefined);
    try {
      c.executionCtx.waitUntil(told);
    } catch {
      // no execution context (tests calling the app directly): the promise runs on its own
    }
  };

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await Promise.race([reader.read(), stopped]);
      if (next === null) {
        cleanup();
        controller.enqueue(encoder.encode(`: ${reason}: ${resume}\n\n`));
        controller.close();
        void reader.cancel().catch(() => undefined);
        return;
      }
      if (next.done) {
        cleanup();
        controller.close();
        return;
      }
      controller.enqueue(next.value);
    },
    cancel() {
      cleanup();
      void reader.cancel().catch(() => undefined);
    },
  });
}
