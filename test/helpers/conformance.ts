/**
 * Checks real responses against /openapi.json, the way a generated client or an
 * API fuzzer reads the document: the status must be documented for the
 * operation, the content type declared for that status, and a JSON body must
 * validate against the declared schema. Runs in workerd and in Node alike
 * (@cfworker/json-schema needs no code generation).
 */
import { Validator, type Schema } from "@cfworker/json-schema";

type Responses = Record<string, { content?: Record<string, { schema?: Schema }> }>;
type Operation = { operationId?: string; responses?: Responses };
export type OpenApiDocument = { paths: Record<string, Record<string, Operation>>; components?: Record<string, unknown> };

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];
/** The description itself, its reference page and liveness are served beside the API, not described in it. */
const DESCRIPTION_PATHS = new Set(["/openapi.json", "/docs", "/healthz"]);
const DOC_URI = "https://wasmvisor.invalid/openapi.json";

const pointer = (...parts: string[]) => "#/" + parts.map((p) => p.replace(/~/g, "~0").replace(/\//g, "~1")).join("/");
const mediaType = (contentType: string | null) => (contentType ?? "").split(";")[0]!.trim().toLowerCase();

interface Route {
  method: string;
  template: string;
  pattern: RegExp;
  literalSegments: number;
  op: Operation;
}

export class Conformance {
  private readonly routes: Route[] = [];
  private readonly validators = new Map<string, Validator>();
  readonly violations: string[] = [];
  checked = 0;

  constructor(private readonly doc: OpenApiDocument) {
    for (const [template, item] of Object.entries(doc.paths)) {
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        const source = template.split("/").map((s) => (/^\{.+\}$/.test(s) ? "[^/]+" : s.replace(/[.*+?^$()|[\]\\]/g, "\\$&"))).join("/");
        this.routes.push({ method, template, pattern: new RegExp(`^${source}$`), literalSegments: template.split("/").filter((s) => s && !s.startsWith("{")).length, op });
      }
    }
    // The most specific template wins: /v1/jobs/batch before /v1/jobs/{id}.
    this.routes.sort((a, b) => b.literalSegments - a.literalSegments);
  }

  /** Records a violation (and answers it) when the response is not what the document says. */
  check(method: string, path: string, status: number, contentType: string | null, body: string): string | null {
    this.checked++;
    // The operation is the one the server routed to: a URL's dot segments (a fuzzer's "..") are resolved first.
    const routed = new URL(path, "http://conformance.invalid").pathname;
    const violation = this.find(method.toLowerCase(), routed, status, contentType, body);
    if (violation) this.violations.push(`${method} ${path} -> ${status}: ${violation}`);
    return violation;
  }

  private find(method: string, path: string, status: number, contentType: string | null, body: string): string | null {
    if (method === "get" && DESCRIPTION_PATHS.has(path)) return null;
    const route = this.routes.find((r) => r.method === method && r.pattern.test(path));
    if (!route) {
      // Not an operation: the path is unknown (404) or takes other methods (405). Both are problem+json.
      const known = this.routes.some((r) => r.pattern.test(path));
      if (status !== (known ? 405 : 404)) return `no operation ${method.toUpperCase()} ${path}, yet the answer was ${status}`;
      return mediaType(contentType) === "application/problem+json" ? null : `a ${status} outside the document must be problem+json, was ${contentType}`;
    }
    const responses = route.op.responses ?? {};
    const key = String(status) in responses ? String(status) : "default" in responses ? "default" : null;
    if (key === null) return `status ${status} is not documented for ${method.toUpperCase()} ${route.template}`;
    const content = responses[key]!.content;
    if (body.length === 0) return null;
    if (!content) return `${method.toUpperCase()} ${route.template} ${key} declares no content, but a ${contentType} body came`;
    const type = mediaType(contentType);
    const declared = Object.keys(content).find((t) => t === type || t === "*/*" || (t.endsWith("/*") && type.startsWith(t.slice(0, -1))));
    if (!declared) return `content type ${type} is not declared for ${method.toUpperCase()} ${route.template} ${key} (declared: ${Object.keys(content).join(", ")})`;
    if (!/json$/.test(declared) || !content[declared]!.schema) return null;
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      return `the body is not JSON although ${declared} is declared`;
    }
    const result = this.validator(route, key, declared).validate(value);
    if (result.valid) return null;
    return `body does not match the schema: ${result.errors.slice(-3).map((e) => `${e.instanceLocation} ${e.error}`).join("; ")}`;
  }

  private validator(route: Route, status: string, type: string): Validator {
    const ref = pointer("paths", route.template, route.method, "responses", status, "content", type, "schema");
    let v = this.validators.get(ref);
    if (!v) {
      v = new Validator({ $ref: DOC_URI + ref } as Schema, "2020-12", false);
      v.addSchema(this.doc as unknown as Schema, DOC_URI);
      this.validators.set(ref, v);
    }
    return v;
  }
}

/** What a generated client needs of the document itself, as a list of shortcomings (empty: none). */
export function lintDocument(doc: OpenApiDocument): string[] {
  const out: string[] = [];
  const ids = new Set<string>();
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method] as (Operation & { parameters?: { in: string; name: string; schema?: Record<string, unknown> }[]; requestBody?: unknown }) | undefined;
      if (!op) continue;
      const name = `${method.toUpperCase()} ${template}`;
      if (!op.operationId) out.push(`${name}: no operationId`);
      else if (ids.has(op.operationId)) out.push(`${name}: operationId ${op.operationId} used twice`);
      else ids.add(op.operationId);
      for (const [status, res] of Object.entries(op.responses ?? {})) {
        if (Number(status) >= 400 && !res.content?.["application/problem+json"]) out.push(`${name} ${status}: not declared as application/problem+json`);
        if (Number(status) >= 400 && res.content?.["application/json"]) out.push(`${name} ${status}: declared application/json, sent as application/problem+json`);
      }
      for (const p of op.parameters ?? []) {
        const schema = JSON.stringify(p.schema ?? {});
        if (p.in === "query" && /"null"/.test(schema)) out.push(`${name}: query parameter ${p.name} is nullable`);
      }
    }
  }
  return out;
}
