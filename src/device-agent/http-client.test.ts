import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { httpRequest, httpRequestRetryingOnce } from "./http-client.js";
import { UnreachableError } from "../sdk/fetch-retry.js";

let server: Server;
let base: string;
let resets = 0;
const seen: { method: string; body: string; length: string | undefined }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({ method: req.method!, body: Buffer.concat(chunks).toString(), length: req.headers["content-length"] });
      if (req.url === "/json") return res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({ ok: 1 }));
      if (req.url === "/bytes") return res.end(Buffer.from([0, 97, 115, 109]));
      if (req.url === "/problem") return res.writeHead(404, { "content-type": "application/problem+json" }).end('{"detail":"no"}');
      if (req.url === "/never") return; // answers nothing
      if (req.url === "/cut") {
        res.writeHead(200, { "content-length": "100" }).write("partial");
        return setTimeout(() => req.socket.destroy(), 20);
      }
      if (req.url === "/reset-once" && resets++ === 0) return req.socket.destroy();
      res.end("fine");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("the agent's HTTP client", () => {
  it("answers the status and the whole body, as JSON or as bytes", async () => {
    const json = await httpRequest(`${base}/json`);
    expect([json.status, json.ok, json.json()]).toEqual([201, true, { ok: 1 }]);
    const problem = await httpRequest(`${base}/problem`);
    expect([problem.status, problem.ok, problem.json()]).toEqual([404, false, { detail: "no" }]);
    expect([...(await httpRequest(`${base}/bytes`)).bytes()]).toEqual([0, 97, 115, 109]);
  });

  it("sends a body with its length", async () => {
    await httpRequest(`${base}/echo`, { method: "POST", body: "héllo", headers: { "content-type": "text/plain" } });
    expect(seen.at(-1)).toEqual({ method: "POST", body: "héllo", length: "6" });
    await httpRequest(`${base}/echo`, { method: "PUT", body: new Uint8Array([1, 2, 3]) });
    expect(seen.at(-1)!.length).toBe("3");
  });

  it("gives up when its signal is aborted, with the signal's reason", async () => {
    const ctl = new AbortController();
    const pending = httpRequest(`${base}/never`, { signal: ctl.signal });
    setTimeout(() => ctl.abort(new Error("no answer in time")), 50);
    await expect(pending).rejects.toThrow("no answer in time");
  });

  it("fails an answer cut off before its end, instead of handing over half of it", async () => {
    await expect(httpRequest(`${base}/cut`)).rejects.toMatchObject({ code: "ECONNRESET" });
  });

  it("says which server could not be reached and why", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const err = await httpRequestRetryingOnce(`http://127.0.0.1:${port}/x`, {}, true).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnreachableError);
    expect((err as Error).message).toBe(`cannot reach http://127.0.0.1:${port}: connection refused (is the control plane running, and on this port?)`);
  });

  it("tries a repeatable request once more when its connection was cut before an answer, and not one that is not", async () => {
    resets = 0;
    expect((await httpRequestRetryingOnce(`${base}/reset-once`, {}, true)).body.toString()).toBe("fine");
    resets = 0;
    const err = await httpRequestRetryingOnce(`${base}/reset-once`, { method: "POST", body: "{}" }, false).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnreachableError);
    expect((err as Error).message).toContain("the connection was closed before an answer came");
  });
});
