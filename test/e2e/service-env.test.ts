/**
 * Security review finding 2: a service's envFrom names host variables of the agent, but the
 * agent's operator decides which ones may pass (--service-env-allow); an API caller cannot
 * read the agent's secrets through a service. A real agent (dist/) runs a real WASI module
 * that prints its whole environment; its output lines come back through the service's logs.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { compileWat } from "../helpers/wat.js";
import { until } from "../helpers/until.js";

/** A WASI command that writes every environment entry (NAME=value) on a line of its own. */
const PRINT_ENV = `(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $size i32) (local $i i32)
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (local.set $size (i32.load (i32.const 4)))
    (drop (call $get (i32.const 1024) (i32.const 8192)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $size)))
      (if (i32.eqz (i32.load8_u (i32.add (i32.const 8192) (local.get $i))))
        (then (i32.store8 (i32.add (i32.const 8192) (local.get $i)) (i32.const 10))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.store (i32.const 16) (i32.const 8192))
    (i32.store (i32.const 20) (local.get $size))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))`;

let cp: ControlPlane;
let register: string;
let printEnv: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  cp = await startControlPlane();
  register = (await cp.admin.createKey("register")).key;
  printEnv = (await cp.admin.uploadModule(await compileWat(PRINT_ENV))).digest;
}, 60_000);

afterEach(async () => {
  for (const a of agents.splice(0)) await a.kill("SIGKILL").catch(() => undefined);
});

afterAll(async () => {
  await cp?.stop();
});


describe("envFrom passes only what the agent's operator allows", () => {
  it("a variable not on --service-env-allow never reaches the guest (and the service says it was dropped); an allowed one does", async () => {
    const a = await startAgent({
      server: cp.url,
      token: register,
      args: ["--service-env-allow", "SERVICE_REGION"],
      env: { SERVICE_REGION: "eu-west-1", AGENT_SECRET_KEY: "s3cr3t-never-shown", WASMVISOR_TOKEN: "wv-token-never-shown" },
    });
    agents.push(a);
    await cp.admin.createService(a.deviceId, { name: "envdump", module: printEnv, env: { MODE: "demo" }, envFrom: ["SERVICE_REGION", "AGENT_SECRET_KEY", "WASMVISOR_TOKEN"] });
    const lines = await until("the guest's environment in the service's logs", async () => {
      const got = (await cp.admin.serviceLogs(a.deviceId, "envdump")).map((l) => l.line);
      return got.some((l) => l.startsWith("MODE=")) ? got : null;
    });
    expect(lines).toContain("MODE=demo");
    expect(lines).toContain("SERVICE_REGION=eu-west-1");
    expect(lines.join("\n")).not.toContain("s3cr3t-never-shown");
    expect(lines.join("\n")).not.toContain("wv-token-never-shown");
    expect(lines.filter((l) => /^(AGENT_SECRET_KEY|WASMVISOR_TOKEN)=/.test(l))).toEqual([]);
    // The service tells why: the names the agent dropped.
    const view = await until("the service reported", async () => {
      const s = await cp.admin.getService(a.deviceId, "envdump");
      return /AGENT_SECRET_KEY/.test(s.lastError ?? "") ? s : null;
    });
    expect(view.lastError).toMatch(/not allowed.*AGENT_SECRET_KEY, WASMVISOR_TOKEN/);
    // The run file (holding the values passed) is readable by the agent's user only.
    const run = join(a.dataDir, "services", "envdump", "run.json");
    expect(existsSync(run)).toBe(true);
    expect((statSync(run).mode & 0o777).toString(8)).toBe("600");
    expect(readdirSync(join(a.dataDir, "services", "envdump")).filter((f) => f.endsWith(".json")).map((f) => (statSync(join(a.dataDir, "services", "envdump", f)).mode & 0o077))).toEqual(
      readdirSync(join(a.dataDir, "services", "envdump")).filter((f) => f.endsWith(".json")).map(() => 0),
    );
    expect(readFileSync(run, "utf8")).not.toContain("s3cr3t-never-shown");
  }, 120_000);

  it("with no --service-env-allow, no host variable passes at all", async () => {
    const a = await startAgent({ server: cp.url, token: register, env: { SERVICE_REGION: "eu-west-1" } });
    agents.push(a);
    await cp.admin.createService(a.deviceId, { name: "envdump", module: printEnv, env: { MODE: "plain" }, envFrom: ["SERVICE_REGION"] });
    const lines = await until("the guest's environment in the service's logs", async () => {
      const got = (await cp.admin.serviceLogs(a.deviceId, "envdump")).map((l) => l.line);
      return got.some((l) => l.startsWith("MODE=")) ? got : null;
    });
    expect(lines).toEqual(["MODE=plain"]);
  }, 120_000);
});
