/** Degraded mode's starting point: the desired state cached on disk lets a restarted agent use its deployments before the control plane answers. */
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeploymentSet } from "./deployments.js";
import type { ControlPlaneClient } from "./api-client.js";
import type { ModuleCache } from "./module-cache.js";
import type { DesiredDeployments } from "../protocol/deployment.js";

const DIGEST = "a".repeat(64);
const desired: DesiredDeployments = {
  version: 3,
  deployments: [{ deployment: "thermo", generation: 2, source: "signed", modules: [{ name: "sensor", digest: DIGEST, mounts: [], functions: {} }] }],
};
const call = { deployment: "thermo", generation: 2, module: "sensor", instance: "fresh" as const, inputs: [], outputs: [], result: "none" as const };

const reachable = { desiredDeployments: async () => desired, reportDeployments: async () => ({ updated: 1 }) } as unknown as ControlPlaneClient;
const away = {
  desiredDeployments: async () => {
    throw new Error("cannot reach the control plane");
  },
} as unknown as ControlPlaneClient;
const modules = { get: async () => undefined } as unknown as ModuleCache;

describe("the cached desired state", () => {
  it("is written at each convergence and, after a restart with the control plane away, makes what is on disk usable", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wv-deployments-"));
    const lines: string[] = [];
    const log = (_l: string, msg: string) => void lines.push(msg);
    await new DeploymentSet(dir, reachable, modules, log, () => undefined).converge();
    expect(JSON.parse(readFileSync(join(dir, "desired-deployments.json"), "utf8"))).toEqual(desired);

    // A restart while the control plane is away: without the cache the call could not run.
    const cold = new DeploymentSet(dir, away, modules, log, () => undefined);
    await expect(cold.ensure(call)).rejects.toThrow("cannot reach the control plane");
    const restarted = new DeploymentSet(dir, away, modules, log, () => undefined);
    expect(await restarted.loadCached()).toEqual(desired);
    expect(await restarted.ensure(call)).toBe(join(dir, "deployments", "thermo", "g2", "sensor"));
    expect(lines).toContain("cached desired state loaded");
    // A failed fetch removes nothing: the deployment's files stay while the control plane is away.
    await restarted.converge().catch(() => undefined);
    expect(existsSync(join(dir, "deployments", "thermo", "g2", "sensor"))).toBe(true);
  });

  it("does not count a cached deployment whose directory is gone as applied", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wv-deployments-"));
    await new DeploymentSet(dir, reachable, modules, () => undefined, () => undefined).converge();
    const { rmSync } = await import("node:fs");
    rmSync(join(dir, "deployments", "thermo"), { recursive: true });
    const restarted = new DeploymentSet(dir, away, modules, () => undefined, () => undefined);
    await restarted.loadCached();
    await expect(restarted.ensure(call)).rejects.toThrow();
  });
});
