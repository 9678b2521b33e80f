/**
 * Every command and JSON example in README.md and docs/ works as written: JSON
 * blocks parse, shell blocks pass `bash -n`, and each file's runnable shell
 * blocks run in order, in one shell, against a real control plane and agent,
 * with the `wasmvisor` command on PATH as `npm link` would put it there.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { DeploymentManifest } from "../../src/protocol/deployment.js";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startControlPlane, ADMIN_TOKEN, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { docBlocks, documentationFiles, type DocBlock } from "../helpers/doc-blocks.js";

const SHELLS = new Set(["sh", "bash", "shell"]);
const blocks = documentationFiles().flatMap(docBlocks);
const where = (b: DocBlock) => `${b.file}:${b.line}`;

describe("documentation blocks", () => {
  it("finds the blocks (the extraction itself works)", () => {
    expect(blocks.filter((b) => SHELLS.has(b.lang)).length).toBeGreaterThanOrEqual(5);
    expect(blocks.some((b) => b.lang === "json")).toBe(true);
  });

  it("has only JSON that parses, and manifests the control plane's schema accepts", () => {
    for (const b of blocks.filter((b) => b.lang === "json")) {
      expect(() => JSON.parse(b.code), where(b)).not.toThrow();
      const value = JSON.parse(b.code) as Record<string, unknown>;
      if ("modules" in value) expect(DeploymentManifest.safeParse(value).error, where(b)).toBeUndefined();
    }
    for (const f of readdirSync("examples/deployments")) {
      expect(DeploymentManifest.safeParse(JSON.parse(readFileSync(join("examples/deployments", f), "utf8"))).error, f).toBeUndefined();
    }
  });

  it("has only shell that bash parses, and every skipped block says why", () => {
    for (const b of blocks.filter((b) => SHELLS.has(b.lang))) {
      expect(() => execFileSync("bash", ["-n"], { input: b.code, stdio: ["pipe", "pipe", "pipe"] }), where(b)).not.toThrow();
      if (b.skip !== null) expect(b.skip.length, where(b)).toBeGreaterThan(10);
    }
  });
});

describe("runnable documentation", () => {
  let cp: ControlPlane;
  let agent: AgentProcess;
  let env: NodeJS.ProcessEnv;
  let cwd: string;

  beforeAll(async () => {
    cp = await startControlPlane({ vars: { WASMIOT_FACADE_DOMAIN: "localhost" } });
    agent = await startAgent({ server: cp.url, token: (await cp.admin.createKey("register")).key, args: ["--name", "docs-device"] });
    // A fresh directory holding what the examples name (examples/), so files they write land there, not in the repository.
    cwd = mkdtempSync(join(tmpdir(), "wv-docs-"));
    symlinkSync(resolve("examples"), join(cwd, "examples"));
    const bin = join(cwd, ".bin");
    execFileSync("mkdir", ["-p", bin]);
    writeFileSync(join(bin, "wasmvisor"), `#!/bin/sh\nexec "${process.execPath}" "${resolve("dist/device-agent/cli.js")}" "$@"\n`);
    chmodSync(join(bin, "wasmvisor"), 0o755);
    env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, WASMVISOR_SERVER: cp.url, WASMVISOR_TOKEN: ADMIN_TOKEN };
  });
  afterAll(async () => {
    await agent?.kill();
    await cp?.stop();
  });

  for (const file of documentationFiles()) {
    const runnable = docBlocks(file).filter((b) => SHELLS.has(b.lang) && b.skip === null);
    if (runnable.length === 0) continue;
    it(`runs ${file}'s shell blocks in order (${runnable.length})`, async () => {
      // One shell for the file, so variables set by one block serve the next; the first failure stops it.
      const script = ["set -euo pipefail", ...runnable.flatMap((b) => [`echo "::block ${where(b)}" >&2`, b.code])].join("\n");
      const { code, stdout, stderr } = await runBash(script, cwd, env);
      const failedAt = [...stderr.matchAll(/::block (\S+)/g)].pop()?.[1];
      expect(code, `failed in the block at ${failedAt}\n--- stdout\n${stdout.slice(-4000)}\n--- stderr\n${stderr.slice(-4000)}`).toBe(0);
    }, 180_000);
  }
});

function runBash(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolveRun) => {
    const child = spawn("bash", ["-c", script], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => resolveRun({ code, stdout, stderr }));
  });
}
