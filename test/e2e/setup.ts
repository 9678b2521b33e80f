/**
 * End-to-end tests talk to real control planes over HTTP (the SDK, fetch). Every answer a
 * test process receives from one is checked against that control plane's /openapi.json,
 * like the workers suite's `call` (test/helpers/conformance.ts); a file that saw an
 * undocumented status, content type or body fails.
 */
import { afterAll, expect } from "vitest";
import { Conformance, type OpenApiDocument } from "../helpers/conformance.js";

const realFetch = globalThis.fetch;
const documents = new Map<string, Promise<Conformance | null>>();
const pending: Promise<unknown>[] = [];
const API_PATH = /^\/(v1\/|rpc$|wasmiot\/)/;

function documentOf(origin: string): Promise<Conformance | null> {
  let doc = documents.get(origin);
  if (!doc) {
    doc = realFetch(`${origin}/openapi.json`, { signal: AbortSignal.timeout(10_000) })
      .then(async (r) => (r.ok ? new Conformance((await r.json()) as OpenApiDocument) : null))
      .catch(() => null);
    documents.set(origin, doc);
  }
  return doc;
}

globalThis.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
  const res = await realFetch(input, init);
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
  if ((url.hostname === "127.0.0.1" || url.hostname === "localhost") && API_PATH.test(url.pathname)) {
    const type = res.headers.get("content-type");
    // A live event stream is judged by its status and type; its body ends only with the job.
    const body = type?.startsWith("text/event-stream") ? Promise.resolve("") : res.clone().arrayBuffer().then((b) => (b.byteLength > 0 && !/json|text/.test(type ?? "") ? "binary" : new TextDecoder().decode(b)));
    pending.push(
      Promise.all([documentOf(url.origin), body]).then(([doc, text]) => doc?.check(method, url.pathname, res.status, type, text)).catch(() => undefined),
    );
  }
  return res;
};

afterAll(async () => {
  await Promise.all(pending);
  const docs = (await Promise.all([...documents.values()])).filter((d) => d !== null);
  const checked = docs.reduce((n, d) => n + d.checked, 0);
  console.log(`conformance: ${checked} responses checked, ${docs.reduce((n, d) => n + d.violations.length, 0)} outside the document`);
  if (docs.length > 0) expect(checked, "responses checked").toBeGreaterThan(0);
  expect(docs.flatMap((d) => d.violations), "responses that /openapi.json does not describe").toEqual([]);
});
