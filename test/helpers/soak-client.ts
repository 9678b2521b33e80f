/**
 * The fault suite's HTTP client: every request has a timeout, and a request that is safe to
 * repeat (it carries an Idempotency-Key, or it only reads) is retried with the same key while
 * the control plane is away, until a deadline. Every 5xx is recorded with its request id, so
 * the Worker's log line for it can be found.
 */
export interface ServerFault {
  at: string;
  method: string;
  path: string;
  status: number;
  requestId: string | null;
  problem: unknown;
}

export interface Answer<T> {
  status: number;
  body: T;
  /** how many attempts it took (1: first time) */
  attempts: number;
  requestId: string | null;
}

export class SoakClient {
  readonly serverFaults: ServerFault[] = [];
  /** attempts that failed without an answer (connection refused, reset, timeout) */
  networkFailures = 0;

  constructor(private readonly server: () => string, private readonly token: string) {}

  /**
   * Sends until an answer that is not a 5xx or 429 arrives, or `retryForMs` runs out (then throws).
   * Only for requests that are safe to repeat.
   */
  async send<T>(method: string, path: string, body?: unknown, opts: { headers?: Record<string, string>; timeoutMs?: number; retryForMs?: number } = {}): Promise<Answer<T>> {
    const until = Date.now() + (opts.retryForMs ?? 60_000);
    let attempts = 0;
    let delay = 100;
    for (;;) {
      attempts++;
      try {
        const res = await fetch(this.server() + path, {
          method,
          headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { "content-type": "application/json" }), ...opts.headers },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(opts.timeoutMs ?? 15_000),
        });
        const text = await res.text();
        const parsed = (text ? JSON.parse(text) : null) as T;
        const requestId = res.headers.get("x-request-id");
        if (res.status >= 500) this.serverFaults.push({ at: new Date().toISOString(), method, path, status: res.status, requestId, problem: parsed });
        if (res.status < 500 && res.status !== 429) return { status: res.status, body: parsed, attempts, requestId };
      } catch {
        this.networkFailures++;
      }
      if (Date.now() + delay > until) throw new Error(`${method} ${path}: no answer after ${attempts} attempts`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(2_000, delay * 2);
    }
  }
}
