#!/usr/bin/env node
// Quick start: the control plane on the local workerd runtime (wrangler dev, state
// persisted under .wrangler/state) plus one device agent, then a real job.
// It stays up afterwards so you can explore with curl; Ctrl-C stops both.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";

const PORT = Number(process.env.PORT ?? 8787);
const URL_BASE = `http://127.0.0.1:${PORT}`;
const AGENT_DIR = ".wasmvisor/agent";
const children = [];

/** A Worker secret from .dev.vars, generated (random) into it the first time. */
function devVar(name, prefix, what) {
  const vars = existsSync(".dev.vars") ? readFileSync(".dev.vars", "utf8") : "";
  const found = vars.match(new RegExp(`^${name}=(.+)$`, "m"))?.[1]?.trim();
  if (found) return found;
  const token = prefix + randomBytes(32).toString("base64url");
  writeFileSync(".dev.vars", `${vars}${vars && !vars.endsWith("\n") ? "\n" : ""}${name}=${token}\n`, { mode: 0o600 });
  console.log(`generated ${what} in .dev.vars`);
  return token;
}

const adminToken = () => devVar("ADMIN_TOKEN", "wva_", "an admin token");

function run(name, cmd, args, env = {}) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => console.log(`[${name}] ${line}`));
  }
  child.on("exit", (code, signal) => {
    if (!shuttingDown) {
      console.error(`[${name}] exited (${signal ?? code}); stopping.`);
      shutdown(1);
    }
  });
  children.push(child);
  return child;
}

let shuttingDown = false;
function shutdown(code = 0) {
  shuttingDown = true;
  for (const c of children) c.kill("SIGTERM");
  setTimeout(() => process.exit(code), 1500).unref();
}
process.on("SIGINT", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));

async function waitFor(what, check, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch {}
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function api(token, method, path, body, contentType = "application/json") {
  const res = await fetch(URL_BASE + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": contentType } : {}) },
    body: body && contentType === "application/json" ? JSON.stringify(body) : body,
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const admin = adminToken();
// Device credentials carry a MAC under this key (the control plane refuses to issue or accept them without it).
devVar("DEVICE_CREDENTIAL_KEY", "", "the device credential key");
// Agent data and control-plane state belong together: a credential for a wiped control plane is useless.
if (!existsSync(".wrangler/state") && existsSync(AGENT_DIR)) rmSync(AGENT_DIR, { recursive: true, force: true });
// Credentials from before device credentials carried a MAC (three dot-separated parts) are refused now: register anew.
const saved = existsSync(`${AGENT_DIR}/credential.json`) ? JSON.parse(readFileSync(`${AGENT_DIR}/credential.json`, "utf8")) : null;
if (saved && saved.credential.split(".").length !== 4) rmSync(AGENT_DIR, { recursive: true, force: true });
mkdirSync(".wrangler", { recursive: true });

console.log(`starting the control plane (wrangler dev, local workerd) on ${URL_BASE} ...`);
run("control-plane", "node_modules/.bin/wrangler", ["dev", "--ip", "127.0.0.1", "--port", String(PORT), "--persist-to", ".wrangler/state", "--show-interactive-dev-session=false", "--var", "WASMIOT_FACADE_DOMAIN:localhost"], {
  CI: "true",
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  XDG_CONFIG_HOME: `${process.cwd()}/.wrangler/config`,
});
await waitFor("the control plane", async () => (await fetch(`${URL_BASE}/healthz`)).ok);

const agentArgs = ["dist/device-agent/cli.js", "agent", "--server", URL_BASE, "--data-dir", AGENT_DIR, "--name", "demo-device"];
if (!existsSync(`${AGENT_DIR}/credential.json`)) {
  const key = await api(admin, "POST", "/v1/keys", { role: "register", label: "quick start agent" });
  agentArgs.push("--token", key.key);
}
console.log("starting a device agent ...");
run("agent", process.execPath, agentArgs);
const { deviceId } = await waitFor("the agent to register", async () => JSON.parse(readFileSync(`${AGENT_DIR}/credential.json`, "utf8")));

const mod = await api(admin, "POST", "/v1/modules", readFileSync("examples/wasm/fibo.wasm"), "application/wasm");
console.log(`uploaded examples/wasm/fibo.wasm: sha256 ${mod.digest}`);
const job = await api(admin, "POST", "/v1/jobs", { device: deviceId, module: mod.digest, function: "fibo", args: [20] });
const done = await api(admin, "GET", `${job.links.result}?wait=30`);

// A signed deployment: the function becomes an endpoint that takes its parameters by name.
const { generateSigningKey, signDeployment } = await import("../dist/sdk/index.js");
const { privateJwk, publicJwk } = await generateSigningKey("EdDSA");
await api(admin, "POST", "/v1/orchestrator-keys", { jwk: publicJwk, label: "quick start" });
const manifest = {
  id: "quick-start",
  modules: [{ name: "fibo", digest: mod.digest, devices: [deviceId], functions: { subtract: { params: [{ name: "minuend", type: "integer" }, { name: "subtrahend", type: "integer" }], result: "integer" } } }],
};
await api(admin, "POST", "/v1/deployments", await signDeployment(privateJwk, manifest), "application/jose");
const callPath = "/v1/deployments/quick-start/modules/fibo/subtract?subtrahend=3&minuend=10";
const called = await api(admin, "POST", callPath);
const callDone = await api(admin, "GET", `${called.links.result}?wait=30`);
// The wasmiot facade is on for this local run (WASMIOT_FACADE_DOMAIN=localhost): the device answers as a wasmiot supervisor.
const facade = await api(admin, "POST", `/v1/devices/${deviceId}/wasmiot-facade`);

console.log(`
================================================================================
 fibo(20) on device ${deviceId} = ${JSON.stringify(done.result?.value)}   (job ${done.state}, ${done.result?.durationMs?.toFixed(2)} ms in Wasm)
 subtract(minuend=10, subtrahend=3) through the signed deployment quick-start = ${JSON.stringify(callDone.result?.value)}   (job ${callDone.state})
================================================================================
 Control plane: ${URL_BASE}        API description: ${URL_BASE}/openapi.json
 Admin token:   ${admin}
 Try:
   curl -s -H "authorization: Bearer ${admin}" ${URL_BASE}/v1/devices
   curl -s -H "authorization: Bearer ${admin}" ${URL_BASE}${job.links.self}
   curl -s -H "authorization: Bearer ${admin}" -H "content-type: application/json" \\
        -d '{"device":"${deviceId}","module":"${mod.digest}","function":"subtract","args":[10,3]}' ${URL_BASE}/v1/jobs
   curl -s -X POST -H "authorization: Bearer ${admin}" "${URL_BASE}${callPath}"
   curl -s -H "authorization: Bearer ${admin}" ${URL_BASE}/v1/deployments/quick-start
 wasmiot facade (this device as a wasmiot supervisor, no credential: the host name is the capability):
   curl -s http://${facade.host}:${PORT}/health
   curl -s http://${facade.host}:${PORT}/.well-known/wasmiot-device-description
 Ctrl-C stops the control plane and the agent (state stays in .wrangler/state).
================================================================================
`);
