/**
 * The agent as users install it: `npm pack`, installed with production
 * dependencies only in an empty directory, started with `npx wasmvisor agent`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";

let cp: ControlPlane;
let agent: AgentProcess | undefined;
let installDir: string;
let packed: { files: { path: string }[] };

beforeAll(async () => {
  const packDir = mkdtempSync(join(tmpdir(), "wv-pack-"));
  // dist/ is built by `npm test` before vitest runs; --ignore-scripts keeps prepack from rebuilding it mid-suite.
  const out = execFileSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", packDir], { encoding: "utf8" });
  packed = (JSON.parse(out) as { files: { path: string }[]; filename: string }[])[0]!;
  const tarball = join(packDir, (JSON.parse(out) as { filename: string }[])[0]!.filename);
  installDir = mkdtempSync(join(tmpdir(), "wv-install-"));
  writeFileSync(join(installDir, "package.json"), JSON.stringify({ name: "device", private: true }));
  execFileSync("npm", ["install", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error", tarball], { cwd: installDir, stdio: "pipe" });
  cp = await startControlPlane();
}, 180_000);

afterAll(async () => {
  await agent?.kill();
  await cp?.stop();
});

describe("the packed agent", () => {
  it("ships compiled JavaScript only, no TypeScript sources or tests", () => {
    const paths = packed.files.map((f) => f.path);
    expect(paths).toContain("dist/device-agent/cli.js");
    expect(paths.filter((p) => p.endsWith(".ts") && !p.endsWith(".d.ts"))).toEqual([]);
    expect(paths.some((p) => p.includes(".test."))).toBe(false);
  });

  it("installs with production dependencies only", () => {
    const lock = JSON.parse(readFileSync(join(installDir, "package-lock.json"), "utf8")) as { packages: Record<string, unknown> };
    const installed = Object.keys(lock.packages).filter((p) => p.startsWith("node_modules/")).map((p) => p.slice("node_modules/".length));
    expect(installed.sort()).toEqual(["commander", "eventsource-parser", "jose", "wasmvisor", "ws", "zod"]);
  });

  it("runs with `npx wasmvisor agent` on plain Node and completes a job", async () => {
    const key = await cp.admin.createKey("register", "packed agent");
    agent = await startAgent({ server: cp.url, token: key.key, command: ["npx", "--no", "wasmvisor"], cwd: installDir });
    const fibo = await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"));
    const job = await cp.admin.submitJob({ device: agent.deviceId, module: fibo.digest, function: "fibo", args: [12] });
    expect((await cp.admin.waitForJob(job.id)).result?.value).toBe(233);
  });
});
