/**
 * The agent's deployment set on a real disk with real modules: during a rollout it keeps the
 * previous generation's files (DevicePart.keep), so a rollback to them downloads nothing;
 * once the rollout commits (keep gone) the old generation's directory goes.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeploymentSet } from "./deployments.js";
import { ModuleCache } from "./module-cache.js";
import type { ControlPlaneClient } from "./api-client.js";
import type { AppliedReport, DevicePart } from "../protocol/deployment.js";
import { sha256Hex } from "../core/crypto.js";
import { compileWat, WAT } from "../../test/helpers/wat.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** The control plane's side, in memory: what it serves and how often each artifact was downloaded. */
class Plane {
  desired: DevicePart[] = [];
  version = 0;
  reports: AppliedReport["states"] = [];
  downloads: string[] = [];
  constructor(private readonly blobs: Map<string, Uint8Array<ArrayBuffer>>) {}
  set(parts: DevicePart[]) {
    this.desired = parts;
    this.version++;
  }
  client(): ControlPlaneClient {
    return {
      desiredDeployments: async () => ({ version: this.version, deployments: this.desired }),
      reportDeployments: async (states: AppliedReport["states"]) => {
        this.reports.push(...states);
        return { updated: states.length };
      },
      moduleBinary: async (digest: string) => {
        this.downloads.push(`module ${digest.slice(0, 8)}`);
        return this.blobs.get(digest)!;
      },
      dataFile: async (_deployment: string, digest: string) => {
        this.downloads.push(`file ${digest.slice(0, 8)}`);
        return this.blobs.get(digest)!;
      },
    } as unknown as ControlPlaneClient;
  }
}

describe("DeploymentSet keeps a rollout's previous version", () => {
  it("rolls back to the kept generation without downloading, and prunes it after commit", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "wv-deploy-"));
    dirs.push(dataDir);
    const blobs = new Map<string, Uint8Array<ArrayBuffer>>();
    const put = async (bytes: Uint8Array<ArrayBuffer>) => {
      const d = await sha256Hex(bytes);
      blobs.set(d, bytes);
      return d;
    };
    const m1 = await put(await compileWat(WAT.counter));
    const m2 = await put(await compileWat(WAT.math));
    const f1 = await put(new TextEncoder().encode("config v1\n"));
    const f2 = await put(new TextEncoder().encode("config v2\n"));
    const plane = new Plane(blobs);
    const client = plane.client();
    const set = new DeploymentSet(dataDir, client, new ModuleCache(dataDir, client, 256), () => undefined, () => undefined);
    const part = (generation: number, module: string, file: string, keep?: number): DevicePart => ({
      deployment: "svc", generation, source: "signed", ...(keep ? { keep } : {}),
      modules: [{ name: "app", digest: module, mounts: [{ name: "config.txt", digest: file, size: 10 }], functions: {} }],
    });
    const gens = async () => (await readdir(join(dataDir, "deployments", "svc"))).sort();

    plane.set([part(1, m1, f1)]);
    await set.converge();
    expect(plane.downloads).toEqual([`module ${m1.slice(0, 8)}`, `file ${f1.slice(0, 8)}`]);

    // The rollout sends version 2 and says: keep generation 1.
    plane.set([part(2, m2, f2, 1)]);
    await set.converge();
    expect(await gens()).toEqual(["g1", "g2"]);

    // Rolled back: version 1's module and file come from disk, nothing is downloaded.
    plane.downloads = [];
    plane.set([part(3, m1, f1)]);
    await set.converge();
    expect(plane.downloads).toEqual([]);
    expect(await readFile(join(set.dir("svc", 3, "app"), "config.txt"), "utf8")).toBe("config v1\n");
    expect(await gens()).toEqual(["g3"]);
    expect(plane.reports.map((r) => [r.generation, r.state])).toEqual([[1, "active"], [2, "active"], [3, "active"]]);

    // Another rollout, committed: the part loses its keep (same generation) and the kept directory goes.
    plane.set([part(4, m2, f2, 3)]);
    await set.converge();
    expect(await gens()).toEqual(["g3", "g4"]);
    plane.set([part(4, m2, f2)]);
    await set.converge();
    expect(await gens()).toEqual(["g4"]);
  });
});
