/**
 * Conformance with the wasmiot supervisor, driven by the real wasmiot material
 * (test/fixtures/wasmiot: binaries, manifests exactly as the wasmiot
 * orchestrator sends them, the Python supervisor's captured answers): the real
 * control plane, two real agents, requests as a wasmiot orchestrator makes
 * them (plain HTTP to the device's facade host, no credentials).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startControlPlane, ADMIN_TOKEN, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { FACADE_DOMAIN, FIXTURES, httpRequest, manifest, multipart, startFileServer, type Reply } from "../helpers/wasmiot.js";

const captured = JSON.parse(readFileSync(join(FIXTURES, "captured-python-supervisor-responses.json"), "utf8")) as {
  exchanges: { request: { method: string; path: string }; status: number; body: any }[];
};
const capturedFor = (method: string, path: string) => captured.exchanges.find((e) => e.request.method === method && e.request.path === path)!;

let cp: ControlPlane;
let files: { url: string; close(): void };
let a: AgentProcess;
let b: AgentProcess;
let baseA: string;
let baseB: string;
let connectTo: string;

const req = (url: string, opts: { method?: string; json?: unknown; body?: Buffer; type?: string; chunked?: boolean } = {}) => httpRequest(url, { ...opts, connectTo });

async function api(method: string, path: string, json?: unknown) {
  const res = await fetch(cp.url + path, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(json ? { "content-type": "application/json" } : {}) }, ...(json ? { body: JSON.stringify(json) } : {}) });
  return { status: res.status, body: (await res.json()) as any };
}

/** Follows a resultUrl as the wasmiot orchestrator does: 404 until the entry is done. */
async function follow(resultUrl: string, timeoutMs = 40_000): Promise<Reply> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await req(resultUrl);
    if (res.status !== 404 || Date.now() > until) return res;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function callAndFollow(base: string, path: string, opts: { method?: string; body?: Buffer; type?: string } = {}) {
  const res = await req(base + path, opts);
  expect(res.status, res.text).toBe(200);
  expect(res.body.resultUrl).toMatch(new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/request-history/`));
  return follow(res.body.resultUrl as string);
}

async function deployTo(base: string, body: unknown) {
  const res = await req(`${base}//deploy`, { method: "POST", json: body });
  expect(res.status, res.text).toBe(200);
  expect(res.body).toEqual({ status: "success" });
}

/** A manifest for one GET function with integer parameters, in the wasmiot orchestrator's shape. */
function simpleManifest(deploymentId: string, module: string, binary: string, fn: string, params: string[], base: string) {
  const endpoint = {
    url: base,
    path: `/${deploymentId}/modules/${module}/${fn}`,
    method: "get",
    request: { parameters: params.map((name) => ({ name, in: "query", required: true, schema: { type: "integer" } })) },
    response: { media_type: "application/json", schema: { type: "integer" } },
  };
  return {
    deploymentId,
    modules: [{ id: `id-${module}`, name: module, urls: { binary: `${files.url}/${binary}`, description: "x", other: {} } }],
    endpoints: { [module]: { [fn]: endpoint } },
    instructions: { modules: { [module]: { [fn]: { from: endpoint, to: null } } } },
    mounts: { [module]: { [fn]: { execution: [], deployment: [], output: [] } } },
  };
}

beforeAll(async () => {
  files = await startFileServer();
  cp = await startControlPlane({ vars: { WASMIOT_FACADE_DOMAIN: FACADE_DOMAIN, WASMIOT_EXTERNAL_FORWARDING: "allow" } });
  connectTo = new URL(cp.url).host;
  const key = await cp.admin.createKey("register", "wasmiot");
  [a, b] = await Promise.all([
    startAgent({ server: cp.url, token: key.key, args: ["--name", "device-a"] }),
    startAgent({ server: cp.url, token: key.key, args: ["--name", "device-b", "--max-instances", "1"] }),
  ]);
  const port = new URL(cp.url).port;
  for (const agent of [a, b]) {
    const issued = await api("POST", `/v1/devices/${agent.deviceId}/wasmiot-facade`);
    expect(issued.status).toBe(201);
    expect(issued.body.host).toMatch(new RegExp(`^[a-z2-7]{26}\\.${FACADE_DOMAIN.replace(".", "\\.")}$`));
    if (agent === a) baseA = `http://${issued.body.host}:${port}`;
    else baseB = `http://${issued.body.host}:${port}`;
  }
  // The facade's health comes from the agent's heartbeat.
  await a.waitForLog((l) => l.msg === "agent started");
}, 120_000);

afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill()]);
  await cp?.stop();
  files?.close();
});

describe("the wasmiot facade, as a wasmiot orchestrator drives it", () => {
  it("deploys fibo and answers fibo(12) = 233 with the supervisor's history entry", async () => {
    await deployTo(baseA, manifest("manifest-fibo-single.json", files.url, baseA));
    const entry = await callAndFollow(baseA, "/dep-fibo/modules/fibo/fibo?param0=12");
    expect(entry.status).toBe(200);
    const want = capturedFor("GET", "/request-history/dep-capture:fibo:fibo:1").body;
    expect(Object.keys(entry.body).sort()).toEqual(Object.keys(want).sort());
    expect(entry.body).toMatchObject({ deployment_id: "dep-fibo", module_name: "fibo", function_name: "fibo", method: "GET", request_args: { param0: "12" }, request_files: {}, result: want.result, success: true });
    expect(new Date(entry.body.work_queued_at as string).getTime()).toBeGreaterThan(Date.now() - 120_000);
    // POST works as well (the captured supervisor accepts both).
    const post = await callAndFollow(baseA, "/dep-fibo/modules/fibo/fibo?param0=20", { method: "POST" });
    expect(post.body).toMatchObject({ method: "POST", result: capturedFor("GET", "/request-history/dep-capture:fibo:fibo:2").body.result, success: true });
    const history = await req(`${baseA}/request-history`);
    expect(history.body.map((e: { request_id: string }) => e.request_id)).toEqual(expect.arrayContaining([entry.body.request_id, post.body.request_id]));
  });

  it("keeps wasmiot's contract but not its defects on bad calls", async () => {
    // wasmiot queues a call without its parameter and fails later (a 500); we refuse it at once, naming the parameter.
    const missing = await req(`${baseA}/dep-fibo/modules/fibo/fibo`);
    expect(missing.status).toBe(400);
    expect(missing.type).toMatch(/application\/problem\+json/);
    expect(missing.body.result).toMatch(/missing required parameter param0/);
    expect((await req(`${baseA}/dep-fibo/modules/fibo/fibo?param0=twelve`)).body.result).toMatch(/param0 must be an integer/);
    const noDeployment = await req(`${baseA}/nope/modules/fibo/fibo?param0=1`);
    expect(noDeployment.status).toBe(capturedFor("GET", "/nope/modules/fibo/fibo?param0=1").status);
    expect(noDeployment.body.result).toBe(capturedFor("GET", "/nope/modules/fibo/fibo?param0=1").body.result);
    const noModule = await req(`${baseA}/dep-fibo/modules/nomod/fibo?param0=1`);
    expect(noModule.status).toBe(404); // wasmiot: 500
    expect(noModule.body.result).toBe(capturedFor("GET", "/dep-capture/modules/nomod/fibo?param0=1").body.result);
    const noEntry = await req(`${baseA}/request-history/does-not-exist`);
    expect(noEntry.status).toBe(404);
    expect(noEntry.body.result).toBe(capturedFor("GET", "/request-history/does-not-exist").body.result);
    // Malformed manifests: wasmiot answers 200 with a message; we answer 400 and deploy nothing.
    const empty = await req(`${baseA}/deploy`, { method: "POST", json: {} });
    expect(empty.status).toBe(400);
    expect(empty.body.result).toMatch(/Non-existent or malformed deployment data/);
    const noModules = await req(`${baseA}/deploy`, { method: "POST", json: { deploymentId: "x", modules: [] } });
    expect(noModules.status).toBe(400);
    expect(noModules.body.result).toMatch(/No modules listed/);
    expect((await req(`${baseA}/x/modules/fibo/fibo?param0=1`)).status).toBe(404);
  });

  it("answers health from the real agent's heartbeat, and the device description", async () => {
    const health = await req(`${baseA}/health`);
    expect(health.status).toBe(200);
    expect(Object.keys(health.body).sort()).toEqual(Object.keys(capturedFor("GET", "/health").body).sort());
    expect(health.body.cpuUsage).toBeGreaterThanOrEqual(0);
    expect(health.body.cpuUsage).toBeLessThanOrEqual(100);
    expect(health.body.memoryUsage).toBeGreaterThan(0);
    expect(health.body.memoryUsage).toBeLessThan(1);
    const desc = await req(`${baseA}/.well-known/wasmiot-device-description`);
    expect(desc.status).toBe(200);
    expect(Object.keys(desc.body).sort()).toEqual(["platform", "supervisorInterfaces"]);
    expect(desc.body.platform.memory.bytes).toBeGreaterThan(0);
    expect(desc.body.supervisorInterfaces).toEqual(expect.arrayContaining(["fd_write", "path_open", "proc_exit"]));
  });

  it("refuses hosts that name no device, and is reachable under /wasmiot/<id>/ only with a credential", async () => {
    expect((await req(`http://${"a".repeat(26)}.${FACADE_DOMAIN}:1/health`)).status).toBe(404);
    const anonymous = await fetch(`${cp.url}/wasmiot/${a.deviceId}/health`);
    expect(anonymous.status).toBe(401);
    const withKey = await fetch(`${cp.url}/wasmiot/${a.deviceId}/health`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(withKey.status).toBe(200);
  });

  it("keeps one instance per deployment: stateful_fibo gives 1, 2, 3, 5, 8, and a redeploy resets it", async () => {
    const m = simpleManifest("dep-stateful", "sfibo", "stateful_fibo.wasm", "stateful_fibo", [], baseA);
    await deployTo(baseA, m);
    const seq: unknown[] = [];
    for (let i = 0; i < 5; i++) seq.push((await callAndFollow(baseA, "/dep-stateful/modules/sfibo/stateful_fibo")).body.result[0]);
    expect(seq).toEqual(["1", "2", "3", "5", "8"]);
    await deployTo(baseA, m);
    expect((await callAndFollow(baseA, "/dep-stateful/modules/sfibo/stateful_fibo")).body.result[0]).toBe("1");
  });

  it("keeps at most --max-instances instances: the least recently used one ends (device B keeps 1)", async () => {
    await deployTo(baseB, simpleManifest("dep-s1", "sfibo", "stateful_fibo.wasm", "stateful_fibo", [], baseB));
    await deployTo(baseB, simpleManifest("dep-s2", "sfibo", "stateful_fibo.wasm", "stateful_fibo", [], baseB));
    const next = async (dep: string) => (await callAndFollow(baseB, `/${dep}/modules/sfibo/stateful_fibo`)).body.result[0];
    expect([await next("dep-s1"), await next("dep-s1")]).toEqual(["1", "2"]);
    expect(await next("dep-s2")).toBe("1"); // a second instance: the first one ends
    expect(await next("dep-s1")).toBe("1"); // so dep-s1 starts over
    await b.waitForLog((l) => l.msg === "ended a kept instance to stay within --max-instances");
  });

  it("refuses a data file over the limit without reading it all, deploying nothing", async () => {
    const m = simpleManifest("dep-big", "fibo", "fibo.wasm", "fibo", ["param0"], baseA);
    m.modules[0]!.urls.other = { data: `${files.url}/endless` } as never;
    (m.mounts.fibo!.fibo as { deployment: unknown[] }).deployment = [{ path: "data", media_type: "text/csv", stage: "deployment" }];
    const res = await req(`${baseA}/deploy`, { method: "POST", json: m });
    expect(res.status).toBe(422);
    expect(res.body.result).toMatch(/over the 16777216-byte limit/);
    expect((await req(`${baseA}/dep-big/modules/fibo/fibo?param0=1`)).status).toBe(404);
  });

  it("takes a manifest sent with chunked transfer encoding (no content-length)", async () => {
    const res = await req(`${baseA}/deploy`, { method: "POST", json: simpleManifest("dep-chunked", "fibo", "fibo.wasm", "fibo", ["param0"], baseA), chunked: true });
    expect(res.status, res.text).toBe(200);
    expect((await callAndFollow(baseA, "/dep-chunked/modules/fibo/fibo?param0=5")).body.result).toEqual(["8", null]);
  });

  it("runs energy-query against its freezer.data_csv deployment mount: 0.09", async () => {
    const m = manifest("manifest-execution-mount-energy-query.json", files.url, baseA);
    m.deploymentId = "dep-freezer";
    m.modules[0].urls.other = { data: `${files.url}/freezer.data_csv` };
    m.mounts.eq.consumed_energy = { execution: [], deployment: [{ path: "data", media_type: "application/octet-stream", stage: "deployment" }], output: [] };
    for (const e of [m.endpoints.eq.consumed_energy, m.instructions.modules.eq.consumed_energy.from]) {
      e.path = "/dep-freezer/modules/eq/consumed_energy";
      e.method = "get";
      delete e.request.request_body;
    }
    await deployTo(baseA, m);
    const entry = await callAndFollow(baseA, "/dep-freezer/modules/eq/consumed_energy?param0=1719226800&param1=5400");
    expect(entry.body).toMatchObject({ success: true, result: ["0.09", null] });
    // The data file sits in this deployment's own directory on the device.
    const dirs = join(a.dataDir, "deployments", "dep-freezer");
    expect(existsSync(dirs)).toBe(true);
  });

  it("takes the same CSV as an execution mount (multipart field data)", async () => {
    await deployTo(baseA, manifest("manifest-execution-mount-energy-query.json", files.url, baseA));
    const form = multipart({ data: readFileSync(join(FIXTURES, "freezer.data_csv")) });
    const entry = await callAndFollow(baseA, "/dep-exec/modules/eq/consumed_energy?param0=1719226800&param1=5400", { method: "POST", ...form });
    expect(entry.body).toMatchObject({ success: true, result: ["0.09", null], request_files: { data: "data" } });
    const noFile = await req(`${baseA}/dep-exec/modules/eq/consumed_energy?param0=1719226800&param1=5400`, { method: "POST" });
    expect(noFile.status).toBe(400);
    expect(noFile.body.result).toMatch(/missing input file data/);
  });

  it("serves the washing machine's output mount; a later run never overwrites an earlier one's file", async () => {
    await deployTo(baseA, manifest("manifest-output-mount-washing-machine.json", files.url, baseA));
    const first = await callAndFollow(baseA, "/dep-wm/modules/wm/run_washing_machine?param0=1719226800&param1=360", { method: "POST" });
    expect(first.body).toMatchObject({ success: true, result: [null, ["data"]] });
    const second = await callAndFollow(baseA, "/dep-wm/modules/wm/run_washing_machine?param0=1719226800&param1=720", { method: "POST" });
    expect(second.body.result).toEqual([null, ["data"]]);
    // wasmiot's routes serve the latest file (the module appends a line per run, as on the Python supervisor)...
    const latest = await req(`${baseA}/module_results/wm/data`);
    expect(latest.status).toBe(200);
    expect(latest.text).toBe("2024;6;24;Mon;11;0;6;0.1\n2024;6;24;Mon;11;0;12;0.2\n");
    expect((await req(`${baseA}/dep-wm/modules/wm/run_washing_machine/data`)).text).toBe(latest.text);
    // ...and each run's own file stays at its own URL.
    expect((await req(`${baseA}/request-history/${first.body.request_id}/files/data`)).text).toBe("2024;6;24;Mon;11;0;6;0.1\n");
    const job = await api("GET", `/v1/jobs/${first.body.request_id}`);
    expect(job.body.outputs).toEqual([{ name: "data", size: 25, mediaType: "application/octet-stream", url: `/v1/jobs/${first.body.request_id}/outputs/data` }]);
    const viaApi = await fetch(cp.url + job.body.outputs[0].url, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(await viaApi.text()).toBe("2024;6;24;Mon;11;0;6;0.1\n");
  });

  it("chains fibo across two agents: fibo(5) = 8 on A, fibo(8) = 34 on B, forwarded by the control plane", async () => {
    await deployTo(baseB, manifest("manifest-chain-fibo-deviceB.json", files.url, baseA, baseB));
    await deployTo(baseA, manifest("manifest-chain-fibo-deviceA.json", files.url, baseA, baseB));
    const first = await callAndFollow(baseA, "/dep-chain/modules/fibo/fibo?param0=5");
    expect(first.body.success).toBe(true);
    // As on the Python supervisor: A's result is B's request-history URL, and B received ?param0=8.
    const next = first.body.result[0] as string;
    expect(next.startsWith(`${baseB}/request-history/`)).toBe(true);
    const final = await follow(next);
    expect(final.body, JSON.stringify(final.body)).toMatchObject({ request_args: { param0: "8" }, result: ["34", null], success: true });
    const job = await api("GET", `/v1/jobs/${first.body.request_id}`);
    expect(job.body.chain).toMatchObject({ state: "succeeded", steps: [{ device: a.deviceId, state: "SUCCEEDED" }, { device: b.deviceId, state: "SUCCEEDED" }] });
  });

  it("chains a file: A's output file becomes B's input, and B's failure fails the chain (wasmiot says success)", async () => {
    await deployTo(baseB, manifest("manifest-file-chain-deviceB.json", files.url, baseA, baseB));
    await deployTo(baseA, manifest("manifest-file-chain-deviceA.json", files.url, baseA, baseB));
    const first = await callAndFollow(baseA, "/dep-fchain/modules/wm/run_washing_machine?param0=1719226800&param1=360", { method: "POST" });
    const final = await follow(first.body.result[0] as string);
    expect(final.body).toMatchObject({ success: false, request_files: { data: "data" } });
    expect(final.body.result).toMatch(/missing required parameter param0/);
    const job = await api("GET", `/v1/jobs/${first.body.request_id}`);
    expect(job.body.chain.state).toBe("failed");
    expect(job.body.chain.steps[1]).toMatchObject({ device: b.deviceId, state: "FAILED" });
  });

  it("forwards to a supervisor outside over HTTP, as a wasmiot supervisor would", async () => {
    const { createServer } = await import("node:http");
    const seen: string[] = [];
    const outside = createServer((r, res) => {
      seen.push(`${r.method} ${r.url}`);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ resultUrl: "http://outside.example/request-history/x1" }));
    });
    await new Promise<void>((r) => outside.listen(0, "127.0.0.1", () => r()));
    try {
      const outsideBase = `http://127.0.0.1:${(outside.address() as { port: number }).port}`;
      const m = manifest("manifest-chain-fibo-deviceA.json", files.url, baseA, outsideBase);
      m.deploymentId = "dep-out";
      for (const e of [m.endpoints.fibo.fibo, m.instructions.modules.fibo.fibo.from]) e.path = "/dep-out/modules/fibo/fibo";
      await deployTo(baseA, m);
      const first = await callAndFollow(baseA, "/dep-out/modules/fibo/fibo?param0=5");
      expect(first.body.result).toEqual(["http://outside.example/request-history/x1", null]);
      expect(seen).toEqual(["GET /dep-chain/modules/fibo/fibo?param0=8"]);
      const job = await api("GET", `/v1/jobs/${first.body.request_id}`);
      expect(job.body.chain).toMatchObject({ state: "succeeded", steps: [{ state: "SUCCEEDED" }, { state: "FORWARDED", url: "http://outside.example/request-history/x1" }] });
    } finally {
      outside.close();
    }
  });

  it("chains natively too: a signed manifest's `to` names the next device, and GET /v1/jobs shows every step", async () => {
    const { generateSigningKey, signDeployment } = await import("../../src/sdk/index.js");
    const { privateJwk, publicJwk } = await generateSigningKey("EdDSA");
    await cp.admin.trustOrchestratorKey(publicJwk, "chain test");
    const digest = (await cp.admin.uploadModule(readFileSync(join(FIXTURES, "fibo.wasm")))).digest;
    const fn = (to: { device: string; module: string; function: string } | null) => ({ params: [{ name: "n", type: "integer" as const }], result: "integer" as const, to });
    await cp.admin.deploy(
      await signDeployment(privateJwk, {
        id: "native-chain",
        modules: [
          { name: "first", digest, devices: [a.deviceId], functions: { fibo: fn({ device: b.deviceId, module: "second", function: "fibo" }) } },
          { name: "second", digest, devices: [b.deviceId], functions: { fibo: fn(null) } },
        ],
      }),
    );
    expect((await cp.admin.waitForDeployment("native-chain")).state).toBe("active");
    const first = await cp.admin.runFunction("native-chain", "first", "fibo", { n: 4 }, 30);
    expect(first).toMatchObject({ done: true, job: { device: a.deviceId, result: { value: 5 } } });
    let job = await cp.admin.getJob(first.job.id);
    for (let i = 0; i < 200 && job.chain?.state !== "succeeded"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      job = await cp.admin.getJob(first.job.id);
    }
    expect(job.chain).toMatchObject({ state: "succeeded", steps: [{ device: a.deviceId, state: "SUCCEEDED" }, { device: b.deviceId, state: "SUCCEEDED" }] });
    const second = await cp.admin.getJob(job.chain!.steps[1]!.job!);
    expect(second).toMatchObject({ args: [5], result: { value: 8 } }); // fibo(4) = 5 on A, fibo(5) = 8 on B
  });

  it("fetches a signed manifest's module from its URL and checks it against the digest", async () => {
    const { generateSigningKey, signDeployment, WasmvisorError } = await import("../../src/sdk/index.js");
    const { privateJwk, publicJwk } = await generateSigningKey("ES256");
    await cp.admin.trustOrchestratorKey(publicJwk, "url test");
    const { createHash } = await import("node:crypto");
    const digest = createHash("sha256").update(readFileSync(join(FIXTURES, "stateful_fibo.wasm"))).digest("hex");
    const manifest = (d: string) => ({
      id: "from-url",
      modules: [{ name: "s", digest: d, url: `${files.url}/stateful_fibo.wasm`, devices: [a.deviceId], functions: { stateful_fibo: { result: "integer" as const, instance: "deployment" as const } } }],
    });
    const wrong = await cp.admin.deploy(await signDeployment(privateJwk, manifest("0".repeat(64)))).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(WasmvisorError);
    expect((wrong as InstanceType<typeof WasmvisorError>).status).toBe(422);
    expect((wrong as InstanceType<typeof WasmvisorError>).problem.detail).toContain(`has sha256 ${digest}`);
    await expect(cp.admin.getDeployment("from-url")).rejects.toMatchObject({ status: 404 });
    await cp.admin.deploy(await signDeployment(privateJwk, manifest(digest)));
    expect((await cp.admin.waitForDeployment("from-url")).state).toBe("active");
    const values = [];
    for (let i = 0; i < 3; i++) values.push((await cp.admin.runFunction("from-url", "s", "stateful_fibo", {}, 30)).job.result?.value);
    expect(values).toEqual([1, 2, 3]); // instance: "deployment" chosen in the manifest
  });

  it("undeploys with DELETE deploy/:id: files removed, then 404 as the supervisor answers", async () => {
    const dir = join(a.dataDir, "deployments", "dep-fibo");
    expect(existsSync(dir)).toBe(true);
    const del = await req(`${baseA}/deploy/dep-fibo`, { method: "DELETE" });
    expect(del.status).toBe(200);
    expect(del.body).toEqual(capturedFor("DELETE", "/deploy/dep-capture").body);
    const again = await req(`${baseA}/deploy/dep-fibo`, { method: "DELETE" });
    const twice = captured.exchanges.filter((e) => e.request.method === "DELETE")[1]!;
    expect(again.status).toBe(twice.status);
    expect(again.body.result).toBe(twice.body.result);
    await a.waitForLog((l) => l.msg === "deployment removed" && l.deployment === "dep-fibo");
    expect(existsSync(dir)).toBe(false);
  });

  it("converges by itself when the agent restarts with an empty data dir", async () => {
    await a.kill();
    for (const d of ["deployments", "modules", "sandbox", "outbox"]) rmSync(join(a.dataDir, d), { recursive: true, force: true });
    a = await startAgent({ server: cp.url, dataDir: a.dataDir });
    await a.waitForLog((l) => l.msg === "deployment applied" && l.deployment === "dep-stateful", 60_000);
    expect(existsSync(join(a.dataDir, "deployments", "dep-freezer"))).toBe(true);
    const entry = await callAndFollow(baseA, "/dep-freezer/modules/eq/consumed_energy?param0=1719226800&param1=5400");
    expect(entry.body.result).toEqual(["0.09", null]);
  });

  it("revoking the label takes the device off the facade", async () => {
    expect((await api("DELETE", `/v1/devices/${b.deviceId}/wasmiot-facade`)).body).toEqual({ device: b.deviceId, revoked: true });
    expect((await req(`${baseB}/health`)).status).toBe(404);
  });
});
