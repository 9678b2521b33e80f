/** The parser ships no types: what it answers, as far as the tests read it. */
declare module "parse-prometheus-text-format" {
  export default function parsePrometheusTextFormat(text: string): unknown[];
}
