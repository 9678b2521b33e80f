#!/usr/bin/env node
// Quick start: the control plane on the local workerd runtime (wrangler's
// unstable_startWorker with the real wrangler.toml, state persisted under
// .wrangler/state) plus one device agent, then real jobs. It stays up afterwards
// so you can explore with curl; Ctrl-C stops both.
//
//   npm start                         # http://127.0.0.1:8787
//   npm start -- --port 8788          # another port (or WASMVISOR_PORT=8788 npm start)
//   npm start -- --verbose            # also every request's log line from the Worker
//   npm start -- --inspector          # open the devtools inspector on 127.0.0.1:9229
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

const USAGE = "usage: npm start [-- --port <port>] [--verbose] [--inspector]";
let options;
try {
  options = parseArgs({
    options: { port: { type: "string" }, verbose: { type: "boolean", default: false }, inspector: { type: "boolean", default: false }, help: { type: "boolean", default: false } },
  }).values;
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
if (options.help) {
  console.log(USAGE);
  process.exit(0);
}
const PORT = Number(options.port ?? process.env.WASMVISOR_PORT ?? 8787);
if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) {
  console.error(`--port must be a TCP port number (1-65535), not ${options.port ?? process.env.WASMVISOR_PORT}\n${USAGE}`);
  process.exit(2);
}
const URL_BASE = `http://127.0.0.1:${PORT}`;
const AGENT_DIR = ".wasmvisor/agent";
const FACADE_FILE = ".wasmvisor/facade.json";
const children = [];

process.env.CI = "true"; // wrangler: no interactive prompts
process.env.WRANGLER_SEND_METRICS = "false";
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.XDG_CONFIG_HOME = `${process.cwd()}/.wrangler/config`;

function devVar(name, make) {
  const vars = existsSync(".dev.vars") ? readFileSync(".dev.vars", "utf8") : "";
  const found = vars.match(new RegExp(`^${name}=(.+)$`, "m"))?.[1]?.trim();
  if (found) return found;
  const value = make();
  writeFileSync(".dev.vars", `${vars}${vars && !vars.endsWith("\n") ? "\n" : ""}${name}=${value}\n`, { mode: 0o600 });
  console.log(`generated ${name} in .dev.vars`);
  return value;
}
const adminToken = () => devVar("ADMIN_TOKEN", () => "wva_" + randomBytes(24).toString("base64url"));
// Device credentials carry a MAC under this key: the control plane refuses to issue or accept them without it.
const deviceCredentialKey = () => devVar("DEVICE_CREDENTIAL_KEY", () => randomBytes(32).toString("base64url"));

function portIsFree(port) {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}

/** The agent's JSON log lines, one compact line each; the full line with --verbose. */
function agentLine(line) {
  if (options.verbose) return `[agent] ${line}`;
  try {
    const { level, msg, ...fields } = JSON.parse(line);
    delete fields.time;
    const extra = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
    return `[agent] ${level === "info" ? "" : `${level}: `}${msg}${extra ? `  ${extra}` : ""}`;
  } catch {
    return `[agent] ${line}`;
  }
}

function run(name, cmd, args, format = (l) => `[${name}] ${l}`) {
  const child = spawn(cmd, args, { env: process.env, stdio: ["ignore", "pipe", "pipe"] });
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => console.log(format(line)));
  }
  child.on("exit", (code, signal) => {
    if (!shuttingDown) {
      console.error(`[${name}] exited (${signal ?? code}); stopping.`);
      void shutdown(1);
    }
  });
  children.push(child);
  return child;
}

let shuttingDown = false;
let worker;
async function shutdown(code = 0) {
  shuttingDown = true;
  for (const c of children) c.kill("SIGTERM");
  setTimeout(() => process.exit(code), 1500).unref();
  await worker?.dispose().catch(() => undefined);
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));

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
    signal: AbortSignal.timeout(60_000),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** One compact line per job as it ends (jobs that had ended before this started are not shown). */
function followJobs(token, alreadyShown) {
  const ENDED = new Set(["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELED", "EXPIRED", "REJECTED"]);
  const seen = new Set(alreadyShown);
  const pending = new Set();
  let cursor = null;
  let first = true;
  const show = (j) => {
    const outcome = j.result ? ` = ${JSON.stringify(j.result.value)}` : j.error ? `  (${j.error.kind}: ${j.error.message})` : "";
    console.log(`[job] ${j.id}  ${j.function}  ${j.state}${outcome}`);
  };
  const tick = async () => {
    try {
      for (;;) {
        const page = await api(token, "GET", `/v1/jobs?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
        for (const j of page.jobs) {
          if (seen.has(j.id)) continue;
          seen.add(j.id);
          if (!(first && ENDED.has(j.state))) pending.add(j.id);
        }
        if (!page.nextCursor) break;
        cursor = page.nextCursor;
      }
      for (const id of pending) {
        const job = await api(token, "GET", `/v1/jobs/${id}`);
        if (ENDED.has(job.state)) {
          pending.delete(id);
          show(job);
        }
      }
      first = false;
    } catch {}
    if (!shuttingDown) setTimeout(tick, 1000).unref();
  };
  void tick();
}

if (!(await portIsFree(PORT))) {
  console.error(`port ${PORT} on 127.0.0.1 is in use (another npm start?). Use another one: npm start -- --port ${PORT + 1}`);
  process.exit(1);
}

const admin = adminToken();
const credentialKey = deviceCredentialKey();
// Agent data and control-plane state belong together: a credential for a wiped control plane is useless.
if (!existsSync(".wrangler/state") && existsSync(AGENT_DIR)) rmSync(AGENT_DIR, { recursive: true, force: true });
// Credentials from before device credentials carried a MAC (three dot-separated parts) are refused now: register anew.
const saved = existsSync(`${AGENT_DIR}/credential.json`) ? JSON.parse(readFileSync(`${AGENT_DIR}/credential.json`, "utf8")) : null;
if (saved && saved.credential.split(".").length !== 4) rmSync(AGENT_DIR, { recursive: true, force: true });
mkdirSync(".wrangler", { recursive: true });

console.log(`starting the control plane (local workerd, state in .wrangler/state) on ${URL_BASE} ...`);
const { unstable_startWorker } = await import("wrangler");
worker = await unstable_startWorker({
  config: "wrangler.toml",
  bindings: {
    ADMIN_TOKEN: { type: "plain_text", value: admin },
    DEVICE_CREDENTIAL_KEY: { type: "plain_text", value: credentialKey },
    // The wasmiot facade is on for this local run: <label>.localhost reaches this machine.
    WASMIOT_FACADE_DOMAIN: { type: "plain_text", value: "localhost" },
    ...(options.verbose ? {} : { LOG_LEVEL: { type: "plain_text", value: "warn" } }),
  },
  dev: {
    server: { hostname: "127.0.0.1", port: PORT },
    persist: ".wrangler/state",
    inspector: options.inspector ? { port: 9229 } : false,
    logLevel: options.verbose ? "log" : "warn",
    watch: false,
  },
});
await waitFor("the control plane", async () => (await fetch(`${URL_BASE}/healthz`)).ok);

const agentArgs = ["dist/device-agent/cli.js", "agent", "--server", URL_BASE, "--data-dir", AGENT_DIR, "--name", "demo-device"];
if (!existsSync(`${AGENT_DIR}/credential.json`)) {
  const key = await api(admin, "POST", "/v1/keys", { role: "register", label: "quick start agent" });
  agentArgs.push("--token", key.key);
}
console.log("starting a device agent ...");
run("agent", process.execPath, agentArgs, agentLine);
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
 Dashboard:     ${URL_BASE}/dashboard/   (log in with the admin token)   API reference: ${URL_BASE}/docs
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
followJobs(admin, [job.id, called.job]);
