import { describe, expect, it } from "vitest";
import { continueTrace, formatTraceparent, parseTraceparent } from "./trace.js";

const VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("traceparent", () => {
  it("parses the specification's example", () => {
    expect(parseTraceparent(VALID)).toEqual({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", flags: "01" });
  });

  it("refuses invalid headers", () => {
    for (const bad of [
      "", "garbage", VALID.toUpperCase(), "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      `${VALID}-extra`, "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    ]) expect(parseTraceparent(bad), bad).toBeNull();
    // a later version may carry more fields
    expect(parseTraceparent(`01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more`)?.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
  });

  it("continues a valid trace with a new span, and starts one otherwise", () => {
    const next = continueTrace(VALID);
    expect(next.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
    expect(next.parentSpanId).toBe("00f067aa0ba902b7");
    expect(next.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(next.spanId).not.toBe("00f067aa0ba902b7");
    const fresh = continueTrace("nonsense");
    expect(fresh.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(fresh.parentSpanId).toBeNull();
    expect(parseTraceparent(formatTraceparent(fresh))).toEqual({ traceId: fresh.traceId, spanId: fresh.spanId, flags: "01" });
  });
});
