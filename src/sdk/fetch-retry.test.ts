import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { connectionFailureReason, fetchOrExplain, fetchRetryingOnce, isRepeatable, UnreachableError } from "./fetch-retry.js";
import net from "node:net";

let server: http.Server;
let url: string;
let requests = 0;

beforeAll(async () => {
  // Drops every odd request's connection without answering, answers the even ones.
  server = http.createServer((req, res) => {
    if (++requests % 2 === 1) return req.socket.destroy();
    res.end("ok");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(() => new Promise((r) => server.close(r)));

describe("fetchRetryingOnce", () => {
  it("repeats a repeatable request once when the connection drops", async () => {
    requests = 0;
    expect(await (await fetchRetryingOnce(url, { method: "GET" }, true)).text()).toBe("ok");
    expect(requests).toBe(2);
  });

  it("does not repeat a request that is not safe to repeat", async () => {
    requests = 0;
    await expect(fetchRetryingOnce(url, { method: "POST", body: "x" }, false)).rejects.toThrow();
    expect(requests).toBe(1);
  });

  it("counts reads, deletes, puts and keyed posts as repeatable", () => {
    expect(isRepeatable("GET", {})).toBe(true);
    expect(isRepeatable("DELETE", {})).toBe(true);
    expect(isRepeatable("POST", {})).toBe(false);
    expect(isRepeatable("POST", { "Idempotency-Key": "k" })).toBe(true);
  });
});

describe("connection failures", () => {
  it("say which server could not be reached and why", async () => {
    // A port that was just free: nothing listens there.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const err = await fetchOrExplain(`http://127.0.0.1:${port}/v1/jobs`, { signal: AbortSignal.timeout(5_000) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnreachableError);
    expect((err as Error).message).toBe(`cannot reach http://127.0.0.1:${port}: connection refused (is the control plane running, and on this port?)`);
  });

  it("name DNS and TLS failures as such", () => {
    const failed = (code: string, message = "") => Object.assign(new TypeError("fetch failed"), { cause: { code, message } });
    expect(connectionFailureReason(failed("ENOTFOUND"))).toContain("DNS lookup failed");
    expect(connectionFailureReason(failed("DEPTH_ZERO_SELF_SIGNED_CERT", "self-signed certificate"))).toBe("TLS failed (DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate)");
    expect(connectionFailureReason(failed("UND_ERR_CONNECT_TIMEOUT"))).toBe("the connection timed out");
  });
});
