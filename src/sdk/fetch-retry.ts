/**
 * fetch, retried once when the connection fails before a response arrives (a
 * pooled keep-alive connection closed by the server just as it was reused, a
 * reset). Only for requests that are safe to repeat: the caller says so.
 */
const CONNECTION_ERRORS = new Set(["UND_ERR_SOCKET", "ECONNRESET", "EPIPE", "UND_ERR_CLOSED"]);

function isConnectionFailure(e: unknown): boolean {
  const cause = (e as { cause?: { code?: string } })?.cause;
  return e instanceof TypeError && cause?.code !== undefined && CONNECTION_ERRORS.has(cause.code);
}

export async function fetchRetryingOnce(url: string, init: RequestInit, repeatable: boolean): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    if (!repeatable || !isConnectionFailure(e) || init.signal?.aborted) throw unreachable(url, e);
    return fetchOrExplain(url, init);
  }
}

/** fetch, whose connection failures say which server and why (not undici's bare "fetch failed"). */
export async function fetchOrExplain(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw unreachable(url, e);
  }
}

/** The control plane could not be reached: no HTTP answer came. */
export class UnreachableError extends Error {
  constructor(readonly url: string, readonly reason: string, options?: ErrorOptions) {
    super(`cannot reach ${url}: ${reason}`, options);
  }
}

function unreachable(url: string, e: unknown): unknown {
  if (e instanceof UnreachableError || (e as Error)?.name === "AbortError" || (e as Error)?.name === "TimeoutError") return e;
  if (!(e instanceof TypeError)) return e;
  return new UnreachableError(new URL(url).origin, connectionFailureReason(e), { cause: e });
}

/** Why a connection failed, in words an operator can act on. */
export function connectionFailureReason(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } })?.cause;
  const code = cause?.code ?? "";
  if (code === "ECONNREFUSED") return "connection refused (is the control plane running, and on this port?)";
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return `DNS lookup failed (${code}: no such host)`;
  if (code === "ETIMEDOUT" || code === "UND_ERR_CONNECT_TIMEOUT") return "the connection timed out";
  if (code === "ECONNRESET" || code === "UND_ERR_SOCKET" || code === "EPIPE") return "the connection was closed before an answer came";
  if (/CERT|TLS|SSL|SELF_SIGNED/i.test(code)) return `TLS failed (${code}${cause?.message ? `: ${cause.message}` : ""})`;
  return cause?.message ? `${cause.message}${code ? ` (${code})` : ""}` : String((e as Error)?.message ?? e);
}

export const isRepeatable = (method: string, headers: Record<string, string>) =>
  method === "GET" || method === "HEAD" || method === "PUT" || method === "DELETE" || Object.keys(headers).some((h) => h.toLowerCase() === "idempotency-key");
