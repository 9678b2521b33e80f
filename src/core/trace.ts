/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` header,
 * `version-traceid-parentid-flags`. A valid one is continued; an absent or invalid one
 * starts a new trace. Pure, shared by the Worker, the objects and the agent.
 */

export interface TraceContext {
  /** 32 lowercase hex, not all zero */
  traceId: string;
  /** 16 lowercase hex, not all zero: the span of whoever sends this context on */
  spanId: string;
  /** 2 hex; bit 0 = sampled */
  flags: string;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
export const TRACE_ID = /^[0-9a-f]{32}$/;

/** The context a `traceparent` header carries, or null when it is absent or not valid. */
export function parseTraceparent(header: string | null | undefined): TraceContext | null {
  if (!header) return null;
  const m = TRACEPARENT.exec(header.trim());
  if (!m) return null;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === "ff") return null;
  // Version 00 has exactly four fields; a later version may append more, which we ignore.
  if (version === "00" && rest !== undefined) return null;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return null;
  return { traceId, spanId, flags };
}

const hex = (bytes: number) => Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");

/** A fresh span id (never all zero). */
export function newSpanId(): string {
  for (;;) {
    const id = hex(8);
    if (!/^0+$/.test(id)) return id;
  }
}

export function newTraceId(): string {
  for (;;) {
    const id = hex(16);
    if (!/^0+$/.test(id)) return id;
  }
}

/** This hop's context: the caller's trace with a new span of ours, or a new sampled trace. */
export function continueTrace(header: string | null | undefined): TraceContext & { parentSpanId: string | null } {
  const parent = parseTraceparent(header);
  return parent
    ? { traceId: parent.traceId, spanId: newSpanId(), flags: parent.flags, parentSpanId: parent.spanId }
    : { traceId: newTraceId(), spanId: newSpanId(), flags: "01", parentSpanId: null };
}

export function formatTraceparent(t: TraceContext): string {
  return `00-${t.traceId}-${t.spanId}-${t.flags}`;
}
