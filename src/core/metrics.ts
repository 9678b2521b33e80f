/**
 * The Prometheus text exposition format (version 0.0.4) and the fixed latency buckets the
 * job index counts into. Pure: the objects keep the counts, the Worker renders them.
 * Names follow Prometheus conventions: `wasmvisor_` prefix, base units (`_seconds`),
 * counters end in `_total`, histograms render `_bucket{le}`, `_sum`, `_count`.
 */

export type MetricType = "gauge" | "counter" | "histogram";

export type Labels = Record<string, string>;

export interface Sample {
  labels?: Labels;
  value: number;
}

/** One histogram series: counts per bucket of LATENCY_BUCKETS (not cumulative; the last is past the largest bound), sum in seconds. */
export interface HistogramSample {
  labels?: Labels;
  buckets: number[];
  sum: number;
}

export type Family =
  | { name: string; help: string; type: "gauge" | "counter"; samples: Sample[] }
  | { name: string; help: string; type: "histogram"; histograms: HistogramSample[] };

/** Upper bounds in seconds of the job latency histograms (plus +Inf). */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800] as const;

/** The bucket a duration (ms) falls into: the first bound >= it, or LATENCY_BUCKETS.length for +Inf. */
export function bucketOf(ms: number): number {
  const s = ms / 1000;
  const i = LATENCY_BUCKETS.findIndex((le) => s <= le);
  return i === -1 ? LATENCY_BUCKETS.length : i;
}

/** How many agent versions get their own label value; the rest are summed as "other". */
export const MAX_VERSION_LABELS = 10;

/** Keeps the `max` largest label values and sums the rest into `other`, so the label set stays bounded. */
export function boundLabelValues(counts: Map<string, number>, max: number, other = "other"): Map<string, number> {
  const sorted = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const out = new Map(sorted.slice(0, max));
  const rest = sorted.slice(max).reduce((n, [, v]) => n + v, 0);
  if (rest > 0) out.set(other, (out.get(other) ?? 0) + rest);
  return out;
}

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const escapeHelp = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");

function formatValue(v: number): string {
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  if (Number.isNaN(v)) return "NaN";
  return String(v);
}

function formatLabels(labels: Labels | undefined): string {
  const entries = Object.entries(labels ?? {});
  return entries.length === 0 ? "" : `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

/** The exposition text of `families`, in order; one HELP and TYPE line per family. */
export function renderExposition(families: Family[]): string {
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    if (f.type !== "histogram") {
      for (const s of f.samples) lines.push(`${f.name}${formatLabels(s.labels)} ${formatValue(s.value)}`);
      continue;
    }
    for (const h of f.histograms) {
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        cumulative += h.buckets[i] ?? 0;
        lines.push(`${f.name}_bucket${formatLabels({ ...h.labels, le: String(le) })} ${cumulative}`);
      });
      cumulative += h.buckets[LATENCY_BUCKETS.length] ?? 0;
      lines.push(`${f.name}_bucket${formatLabels({ ...h.labels, le: "+Inf" })} ${cumulative}`);
      lines.push(`${f.name}_sum${formatLabels(h.labels)} ${formatValue(h.sum)}`);
      lines.push(`${f.name}_count${formatLabels(h.labels)} ${cumulative}`);
    }
  }
  return lines.join("\n") + "\n";
}

export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
