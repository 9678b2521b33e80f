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
    if (!repeatable || !isConnectionFailure(e) || init.signal?.aborted) throw e;
    return fetch(url, init);
  }
}

export const isRepeatable = (method: string, headers: Record<string, string>) =>
  method === "GET" || method === "HEAD" || method === "PUT" || method === "DELETE" || Object.keys(headers).some((h) => h.toLowerCase() === "idempotency-key");
