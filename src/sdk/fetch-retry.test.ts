import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fetchRetryingOnce, isRepeatable } from "./fetch-retry.js";

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
