/**
 * The agent's HTTP requests, on node:http and node:https (keep-alive), not on fetch. Why: the
 * agent already loads node:http for its WebSocket, while the first fetch loads undici: an idle
 * agent kept 73-81 MB with fetch and 59-60 MB without (docs/benchmarks.md, idle agent RSS). What the agent needs is small: a request with a body, its status and its whole answer
 * (JSON, or a module's bytes), cancelled by a signal.
 */
import http, { type IncomingHttpHeaders } from "node:http";
import https from "node:https";
import { connectionFailureReason, UnreachableError } from "../sdk/fetch-retry.js";

export interface HttpInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  signal?: AbortSignal;
}

/** A whole answer: its status and its body, read to the end. */
export class HttpAnswer {
  constructor(readonly status: number, readonly headers: IncomingHttpHeaders, readonly body: Buffer) {}
  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }
  json(): unknown {
    return JSON.parse(this.body.toString("utf8"));
  }
  bytes(): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(this.body.byteLength);
    out.set(this.body);
    return out;
  }
}

const pools = { "http:": new http.Agent({ keepAlive: true }), "https:": new https.Agent({ keepAlive: true }) };

/** One request; rejects with the socket's error (its `code`) when no answer came, or the signal's reason. */
export function httpRequest(url: string, init: HttpInit = {}): Promise<HttpAnswer> {
  const target = new URL(url);
  const client = target.protocol === "https:" ? https : http;
  const body = typeof init.body === "string" ? Buffer.from(init.body) : init.body;
  return new Promise((resolve, reject) => {
    if (init.signal?.aborted) return reject(init.signal.reason);
    const req = client.request(
      target,
      {
        method: init.method ?? "GET",
        agent: pools[target.protocol as keyof typeof pools],
        headers: { ...init.headers, ...(body ? { "content-length": String(body.byteLength) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve(new HttpAnswer(res.statusCode ?? 0, res.headers, Buffer.concat(chunks))));
        res.on("error", reject);
        // closed before its end: the connection was cut mid-answer
        res.on("close", () => res.complete || reject(Object.assign(new Error("the answer was cut off"), { code: "ECONNRESET" })));
      },
    );
    const abort = () => req.destroy(init.signal!.reason instanceof Error ? init.signal!.reason : new Error(String(init.signal!.reason)));
    init.signal?.addEventListener("abort", abort, { once: true });
    req.on("error", (e) => reject(init.signal?.aborted ? init.signal.reason : e));
    req.on("close", () => init.signal?.removeEventListener("abort", abort));
    req.end(body);
  });
}

const CONNECTION_ERRORS = new Set(["ECONNRESET", "EPIPE"]);

/**
 * A request retried once when its connection failed before an answer came (a keep-alive
 * connection the server closed just as it was reused), if it is safe to repeat. A connection
 * failure says which server and why, as the SDK's do (UnreachableError).
 */
export async function httpRequestRetryingOnce(url: string, init: HttpInit, repeatable: boolean): Promise<HttpAnswer> {
  try {
    return await httpRequest(url, init);
  } catch (e) {
    if (!repeatable || init.signal?.aborted || !CONNECTION_ERRORS.has((e as { code?: string }).code ?? "")) throw unreachable(url, e, init.signal);
    try {
      return await httpRequest(url, init);
    } catch (again) {
      throw unreachable(url, again, init.signal);
    }
  }
}

function unreachable(url: string, e: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted || typeof (e as { code?: unknown })?.code !== "string") return e;
  return new UnreachableError(new URL(url).origin, connectionFailureReason({ cause: e }), { cause: e });
}
