import { describe, expect, it } from "vitest";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { boundLabelValues, bucketOf, LATENCY_BUCKETS, renderExposition } from "./metrics.js";

describe("the exposition format", () => {
  it("puts a duration in the first bucket whose bound is at least it, past the last in +Inf", () => {
    expect(bucketOf(0)).toBe(0);
    expect(bucketOf(5)).toBe(0);
    expect(bucketOf(6)).toBe(1);
    expect(bucketOf(1000)).toBe(LATENCY_BUCKETS.indexOf(1));
    expect(bucketOf(1_800_001)).toBe(LATENCY_BUCKETS.length);
  });

  it("keeps the most common label values and sums the rest as other", () => {
    const bounded = boundLabelValues(new Map([["a", 5], ["b", 3], ["c", 1], ["d", 1]]), 2);
    expect([...bounded]).toEqual([["a", 5], ["b", 3], ["other", 2]]);
  });

  it("renders what a real parser reads back: escaped labels, cumulative buckets, sum and count", () => {
    const buckets = new Array(LATENCY_BUCKETS.length + 1).fill(0);
    buckets[0] = 2;
    buckets[3] = 1;
    buckets[LATENCY_BUCKETS.length] = 1;
    const text = renderExposition([
      { name: "x_devices", help: "Devices\nby status", type: "gauge", samples: [{ labels: { version: 'we"ird\\v' }, value: 3 }] },
      { name: "x_seconds", help: "Latency.", type: "histogram", histograms: [{ buckets, sum: 12.5 }] },
    ]);
    const parsed = parsePrometheusTextFormat(text) as { name: string; metrics: { labels?: Record<string, string>; value?: string; buckets?: Record<string, string>; count?: string; sum?: string }[] }[];
    expect(parsed[0]!.metrics[0]).toEqual({ labels: { version: 'we"ird\\v' }, value: "3" });
    const h = parsed[1]!.metrics[0]!;
    expect(h.buckets!["0.005"]).toBe("2");
    expect(h.buckets!["0.05"]).toBe("3");
    expect(h.buckets!["1800"]).toBe("3");
    expect(h.buckets!["+Inf"]).toBe("4");
    expect(h.count).toBe("4");
    expect(h.sum).toBe("12.5");
  });
});
