/** The `wasmvisor` CLI as operators and scripts use it: output and exit codes. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startControlPlane, ADMIN_TOKEN, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { compileWat, WAT } from "../helpers/wat.js";

let cp: ControlPlane;
let agent: AgentProcess;

beforeAll(async () => {
  cp = await startControlPlane();
  agent = await startAgent({ server: cp.url, token: (await cp.admin.createKey("register")).key, args: ["--name", "cli-device"] });
});
afterAll(async () => {
  await agent?.kill();
  await cp?.stop();
});

/**
 * Runs the CLI without blocking this process: a blocked event loop cannot notice the control plane
 * closing an idle keep-alive connection, and the SDK's next request would go out on a dead socket.
 */
function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["dist/device-agent/cli.js", ...args], { encoding: "utf8", env: { ...process.env, WASMVISOR_SERVER: cp.url, WASMVISOR_TOKEN: ADMIN_TOKEN, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
      resolve({ code, out: stdout, err: stderr });
    });
  });
}

describe("wasmvisor CLI", () => {
  let digest: string;

  it("pushes a module and shows its exports", async () => {
    const r = await cli(["modules", "push", "examples/wasm/fibo.wasm", "--json"]);
    expect(r.code).toBe(0);
    digest = JSON.parse(r.out).digest;
    const table = await cli(["modules", "push", "examples/wasm/fibo.wasm"]);
    expect(table.out).toMatch(/fibo\s+i64\s+i64/);
  });

  it("submits and waits: exit 0 and the result", async () => {
    const r = await cli(["jobs", "submit", agent.deviceId, digest, "fibo", "12", "--wait", "30", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ state: "SUCCEEDED", result: { value: 233 } });
    const human = await cli(["jobs", "submit", agent.deviceId, digest, "subtract", "10", "3", "--wait"]);
    expect(human.code).toBe(0);
    expect(human.out).toMatch(/SUCCEEDED\s+subtract\s+1\/3\s+7/);
  });

  it("submits without waiting, then gets and waits by id", async () => {
    const id = JSON.parse((await cli(["jobs", "submit", agent.deviceId, digest, "fibo", "5", "--json"])).out).id;
    expect((await cli(["jobs", "wait", id, "--json"])).code).toBe(0);
    expect(JSON.parse((await cli(["jobs", "get", id, "--json"])).out).result.value).toBe(8);
  });

  it("lists jobs", async () => {
    const id = JSON.parse((await cli(["jobs", "submit", agent.deviceId, digest, "fibo", "7", "--wait", "30", "--json"])).out).id;
    for (let i = 0; i < 50 && !(await cli(["jobs", "ls", "--device", agent.deviceId])).out.includes(id); i++) await new Promise((r) => setTimeout(r, 100));
    const ls = await cli(["jobs", "ls", "--device", agent.deviceId, "--status", "SUCCEEDED", "--json"]);
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.out).map((j: { id: string }) => j.id)).toContain(id);
  });

  it("exits 1 when the job ends unsuccessfully", async () => {
    const spin = (await cp.admin.uploadModule(await compileWat(WAT.spin))).digest;
    const r = await cli(["jobs", "submit", agent.deviceId, spin, "spin", "--timeout-ms", "300", "--max-attempts", "1", "--wait", "30"]);
    expect(r.code).toBe(1);
    expect(r.out).toContain("TIMED_OUT");
  });

  it("exits 3 when the control plane refuses, 4 when it cannot be reached, 2 on usage errors", async () => {
    const bad = await cli(["jobs", "submit", agent.deviceId, digest, "fibo"]);
    expect(bad.code).toBe(3);
    expect(bad.err).toContain("expected 1 argument");
    expect((await cli(["devices", "ls"], { WASMVISOR_TOKEN: "wrong" })).code).toBe(3);
    const closedPort = await freePort();
    const down = await cli(["devices", "ls"], { WASMVISOR_SERVER: `http://127.0.0.1:${closedPort}` });
    expect(down.code).toBe(4);
    expect(down.err).toContain(`cannot reach http://127.0.0.1:${closedPort}: connection refused`);
    expect((await cli(["jobs", "frobnicate"])).code).toBe(2);
  });

  it("exits 2 naming the file when a local file is missing or not JSON", async () => {
    const missing = await cli(["modules", "push", "no-such-module.wasm"]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain("cannot read module no-such-module.wasm: no such file");
    const dir = mkdtempSync(join(tmpdir(), "wv-bad-"));
    const notJson = join(dir, "manifest.json");
    writeFileSync(notJson, "{ // a comment is not JSON\n}");
    const bad = await cli(["deploy", notJson, "--key", notJson]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain(`manifest ${notJson} is not valid JSON`);
  });

  it("lists and shows devices, and manages keys", async () => {
    const ls = await cli(["devices", "ls"]);
    expect(ls.code).toBe(0);
    expect(ls.out).toMatch(new RegExp(`${agent.deviceId}\\s+cli-device\\s+online`));
    const show = await cli(["devices", "show", agent.deviceId]);
    expect(show.out).toContain("host interfaces: ");
    const key = JSON.parse((await cli(["keys", "create", "user", "--label", "ci", "--json"])).out);
    expect(key.key).toMatch(/^wvk\./);
    expect((await cli(["devices", "ls", "--json"], { WASMVISOR_TOKEN: key.key })).code).toBe(0);
    expect((await cli(["keys", "revoke", key.id])).code).toBe(0);
    expect((await cli(["keys", "ls"])).out).toContain(key.id);
  });

  it("reports the capabilities from the agent's device config file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wv-cfg-"));
    const config = join(dir, "device.json");
    writeFileSync(config, JSON.stringify({ name: "cam-1", capabilities: { cameras: ["front"], sensors: ["temp"], labels: { site: "lab" } } }));
    const cam = await startAgent({ server: cp.url, token: (await cp.admin.createKey("register")).key, args: ["--config", config] });
    try {
      const d = await cp.admin.getDevice(cam.deviceId);
      expect(d.name).toBe("cam-1");
      expect(d.description.capabilities).toEqual({ cameras: ["front"], sensors: ["temp"], labels: { site: "lab" } });
    } finally {
      await cam.kill();
    }
  });
});

describe("signed jobs from the CLI", () => {
  it("generates a key pair, trusts it, and submits a signed job where signatures are required", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wv-keys-"));
    const key = join(dir, "orch.jwk");
    expect((await cli(["keys", "generate", "--out", key])).code).toBe(0);
    expect((await cli(["keys", "trust", `${key}.pub.json`, "--label", "ci orchestrator"])).code).toBe(0);
    await cp.admin.request("PUT", "/v1/namespaces/default/settings", { requireSignedJobs: true });
    try {
      const digest = JSON.parse((await cli(["modules", "push", "examples/wasm/fibo.wasm", "--json"])).out).digest;
      const unsigned = await cli(["jobs", "submit", agent.deviceId, digest, "fibo", "12"]);
      expect(unsigned.code).toBe(3);
      expect(unsigned.err).toContain("signed");
      const signed = await cli(["jobs", "submit", agent.deviceId, digest, "fibo", "12", "--sign", key, "--wait", "30", "--json"]);
      expect(signed.code).toBe(0);
      expect(JSON.parse(signed.out).result.value).toBe(233);
    } finally {
      await cp.admin.request("PUT", "/v1/namespaces/default/settings", { requireSignedJobs: false });
    }
  });
});

describe("signed deployments from the CLI", () => {
  it("signs and deploys a manifest, then calls its functions by parameter name", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wv-deploy-"));
    const key = join(dir, "deployer.jwk");
    expect((await cli(["keys", "generate", "--out", key, "--alg", "ES256"])).code).toBe(0);
    expect((await cli(["keys", "trust", `${key}.pub.json`])).code).toBe(0);
    const digest = JSON.parse((await cli(["modules", "push", "test/fixtures/wasmiot/fibo.wasm", "--json"])).out).digest;
    const manifest = {
      id: "cli-fibo",
      modules: [
        {
          name: "fibo",
          digest,
          devices: [agent.deviceId],
          functions: {
            subtract: { params: [{ name: "minuend", type: "integer" }, { name: "subtrahend", type: "integer" }], result: "integer" },
            fibo: { params: [{ name: "n", type: "integer" }], result: "integer" },
          },
        },
      ],
    };
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
    const deployed = await cli(["deploy", join(dir, "manifest.json"), "--key", key, "--wait", "30", "--json"]);
    expect(deployed.code, deployed.err).toBe(0);
    expect(JSON.parse(deployed.out)).toMatchObject({ id: "cli-fibo", state: "active", devices: [{ device: agent.deviceId, state: "active" }] });

    // Named, so the order on the command line does not matter (wasmiot matches by position).
    const sub = await cli(["call", "cli-fibo", "fibo", "subtract", "subtrahend=3", "minuend=10", "--json"]);
    expect(sub.code, sub.err).toBe(0);
    expect(JSON.parse(sub.out)).toMatchObject({ state: "SUCCEEDED", args: [10, 3], result: { value: 7 }, call: { deployment: "cli-fibo", module: "fibo" } });
    expect(JSON.parse((await cli(["call", "cli-fibo", "fibo", "fibo", "n=12", "--json"])).out).result.value).toBe(233);
    // Create-and-wait in one request: `Prefer: wait=N` (a query name could be the function's own parameter).
    const waited = await fetch(`${cp.url}/v1/deployments/cli-fibo/modules/fibo/fibo?n=20`, { method: "POST", headers: { authorization: `Bearer ${ADMIN_TOKEN}`, prefer: "wait=20" } });
    expect(waited.status).toBe(200);
    expect(waited.headers.get("preference-applied")).toBe("wait=20");
    expect(((await waited.json()) as { result: { value: number } }).result.value).toBe(10946);

    const missing = await cli(["call", "cli-fibo", "fibo", "subtract", "minuend=10"]);
    expect(missing.code).toBe(3);
    expect(missing.err).toContain("missing required parameter subtrahend");

    expect((await cli(["deployments", "get", "cli-fibo"])).out).toMatch(/cli-fibo: active/);
    const removed = await cli(["deployments", "rm", "cli-fibo"]);
    expect(removed.code).toBe(0);
    expect((await cli(["deployments", "get", "cli-fibo"])).code).toBe(3);
  });

  it("keeps the wasmiot facade off unless WASMIOT_FACADE_DOMAIN is set", async () => {
    const expose = await cli(["wasmiot", "expose", agent.deviceId]);
    expect(expose.code).toBe(3);
    expect(expose.err).toContain("not enabled");
    const res = await fetch(`${cp.url}/wasmiot/${agent.deviceId}/health`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).toBe(404);
  });

  it("announces a facade to a wasmiot orchestrator as its supervisors do", async () => {
    const { createServer } = await import("node:http");
    const { spawn } = await import("node:child_process");
    const received: { path: string; body: unknown }[] = [];
    const orchestrator = createServer((req, res) => {
      let data = "";
      req.on("data", (c) => (data += c));
      req.on("end", () => {
        received.push({ path: req.url ?? "", body: JSON.parse(data) });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((r) => orchestrator.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(orchestrator.address() as { port: number }).port}`;
    const child = spawn(process.execPath, ["dist/device-agent/cli.js", "wasmiot", "register", "--orchestrator", url, "--host", "abc.wasmiot.example.com", "--port", "443"], { stdio: "pipe" });
    const code = await new Promise<number | null>((r) => child.on("exit", r));
    orchestrator.close();
    expect(code).toBe(0);
    expect(received).toEqual([
      {
        path: "/file/device/discovery/register",
        body: { name: "abc", type: "webthing", port: 443, properties: { path: "/", tls: "0" }, addresses: ["abc.wasmiot.example.com"], host: "abc.wasmiot.example.com" },
      },
    ]);
  });
});

/** A port nothing listens on (it was free a moment ago). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return port;
}
