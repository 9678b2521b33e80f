/** Where WebSockets are blocked (a proxy that refuses upgrades), the agent falls back to long-poll by itself. */
import { afterAll, beforeAll, expect, it } from "vitest";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";

let cp: ControlPlane;
let proxy: http.Server;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  cp = await startControlPlane();
  const target = new URL(cp.url);
  proxy = http.createServer((req, res) => {
    const upstream = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  proxy.on("upgrade", (_req, socket) => socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"));
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
});

afterAll(async () => {
  await agent?.kill();
  proxy?.closeAllConnections();
  await new Promise((r) => proxy?.close(r));
  await cp?.stop();
});

it("switches to long-poll when the WebSocket upgrade is refused, and still runs jobs", async () => {
  const via = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  const key = await cp.admin.createKey("register");
  agent = await startAgent({ server: via, token: key.key });
  await agent.waitForLog((l) => l.msg === "WebSocket transport unavailable; using long-poll");
  const fibo = await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"));
  const job = await cp.admin.submitJob({ device: agent.deviceId, module: fibo.digest, function: "fibo", args: [12] });
  expect((await cp.admin.waitForJob(job.id)).result?.value).toBe(233);
  expect(agent.logs.some((l) => l.msg === "push transport connected")).toBe(false);
});

it("answers JSON-RPC through the SDK, with a real agent behind job.run", async () => {
  const fibo = await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"));
  const info = await cp.admin.rpc<{ name: string }>("supervisor.info");
  expect(info.name).toBe("wasmvisor");
  const job = await cp.admin.rpc<{ state: string; result: { value: number } }>("job.run", { device: agent!.deviceId, module: fibo.digest, function: "subtract", args: [10, 3], wait: 20 });
  expect(job).toMatchObject({ state: "SUCCEEDED", result: { value: 7 } });
  await expect(cp.admin.rpc("job.status", { id: "nope" })).rejects.toMatchObject({ code: -32602 });
});
