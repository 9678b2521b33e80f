/**
 * Talking to the wasmiot facade as a wasmiot orchestrator does: plain HTTP to
 * `<label>.<domain>` with no credentials. Test machines do not resolve such
 * names, so requests go to the control plane's address with that Host header
 * (node:http lets us set it; fetch does not). Also a tiny file server for the
 * module and data URLs a wasmiot manifest names.
 */
import http from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const FIXTURES = "test/fixtures/wasmiot";
export const FACADE_DOMAIN = "wasmiot.localhost";

export type Reply = { status: number; type: string; body: any; text: string };

/** One HTTP request to `url`, sent to `connectTo` (host:port) when the URL's host does not resolve. */
export function httpRequest(url: string, opts: { method?: string; json?: unknown; body?: Buffer; type?: string; connectTo: string; headers?: Record<string, string>; chunked?: boolean }): Promise<Reply> {
  const u = new URL(url);
  const [host, port] = opts.connectTo.split(":");
  const payload = opts.json !== undefined ? Buffer.from(JSON.stringify(opts.json)) : opts.body;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host,
        port: Number(port),
        method: opts.method ?? "GET",
        path: u.pathname + u.search,
        headers: {
          host: u.host,
          ...(payload ? { "content-type": opts.type ?? "application/json", ...(opts.chunked ? { "transfer-encoding": "chunked" } : { "content-length": String(payload.length) }) } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"] ?? ""), body, text });
        });
      },
    );
    req.on("error", reject);
    if (payload) req.write(payload);
    req.end();
  });
}

/** A multipart/form-data body with one file per field. */
export function multipart(files: Record<string, Buffer>): { body: Buffer; type: string } {
  const boundary = `----wv${Math.random().toString(16).slice(2)}`;
  const parts: Buffer[] = [];
  for (const [name, bytes] of Object.entries(files)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`), bytes, Buffer.from("\r\n"));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), type: `multipart/form-data; boundary=${boundary}` };
}

/** Serves the fixture files (what the wasmiot orchestrator's file server does). */
export function startFileServer(): Promise<{ url: string; requests: string[]; close(): void }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? "");
    if (req.url === "/endless") {
      // No content-length, and more than any limit: the control plane must stop reading.
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const chunk = Buffer.alloc(1 << 20);
      let sent = 0;
      const pump = () => {
        while (sent < 64 && res.write(chunk)) sent++;
        if (sent < 64) res.once("drain", pump);
        else res.end();
      };
      res.on("close", () => (sent = 64));
      pump();
      return;
    }
    try {
      const bytes = readFileSync(join(FIXTURES, decodeURIComponent((req.url ?? "/").slice(1))));
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(bytes);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      resolve({ url: `http://127.0.0.1:${port}`, requests, close: () => server.close() });
    }),
  );
}

/** A fixture manifest with its hosts rewritten: the file server, and device A's / B's facade bases. */
export function manifest(file: string, files: string, a: string, b = a): any {
  const text = readFileSync(join(FIXTURES, file), "utf8")
    .replaceAll("http://127.0.0.1:8000", files)
    .replaceAll("http://127.0.0.1:5001", a)
    .replaceAll("http://127.0.0.1:5002", b);
  return JSON.parse(text);
}
