/**
 * The agent's side of deployments: converge the device to its desired state.
 * Each deployment's module gets its own sandbox directory per generation
 * (data/deployments/<id>/g<generation>/<module>), never shared with another
 * deployment; data files are fetched and checked against their sha256;
 * anything not desired any more is removed. An agent started with an empty
 * data dir converges back by itself: the desired state lives in the control plane.
 */
import { mkdir, readdir, readFile, rm, writeFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { sha256Hex } from "../core/crypto.js";
import { coalesced } from "../core/coalesced.js";
import type { AppliedReport, CallContext, DevicePart } from "../protocol/deployment.js";
import type { ControlPlaneClient } from "./api-client.js";
import type { ModuleCache } from "./module-cache.js";
import { writeFileAtomic } from "./durable-file.js";
import { DesiredDeployments } from "../protocol/deployment.js";

type Log = (level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;

export class DeploymentSet {
  private readonly root: string;
  /** deployment id -> generation applied here */
  private readonly applied = new Map<string, number>();
  private appliedVersion = -1;
  /** One convergence at a time; a request during one runs another after it. */
  readonly converge = coalesced(() => this.convergeOnce());
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    dataDir: string,
    private readonly client: ControlPlaneClient,
    private readonly modules: ModuleCache,
    private readonly log: Log,
    /** a deployment left this device (or changed generation): its kept instances must go */
    private readonly onRetired: (deployment: string) => void,
  ) {
    this.root = join(dataDir, "deployments");
  }

  /** The sandbox directory of one module of one deployment generation. */
  dir(deployment: string, generation: number, module: string): string {
    return join(this.root, deployment, `g${generation}`, module);
  }

  /** The directory of a module of a deployment as applied here now (null: not applied): a service may use it as its sandbox. */
  appliedDir(deployment: string, module: string): string | null {
    const generation = this.applied.get(deployment);
    return generation === undefined ? null : this.dir(deployment, generation, module);
  }

  /** The desired state as last fetched, kept on disk: the agent works from it while the control plane is away. */
  private get cacheFile() {
    return join(this.root, "..", "desired-deployments.json"); // beside the deployments, never one of them
  }

  /**
   * Degraded mode's starting point: the desired state cached by the last convergence. Deployments whose
   * directories are all still here count as applied (calls and services can use them before the control
   * plane answers); the version stays unknown, so the first answer of the control plane reconciles.
   */
  async loadCached(): Promise<DesiredDeployments | null> {
    const text = await readFile(this.cacheFile, "utf8").catch(() => null);
    if (!text) return null;
    const cached = DesiredDeployments.safeParse(JSON.parse(text));
    if (!cached.success) return null;
    for (const part of cached.data.deployments) {
      const present = await Promise.all(part.modules.map((m) => readdir(this.dir(part.deployment, part.generation, m.name)).then(() => true, () => false)));
      if (present.every(Boolean)) this.applied.set(part.deployment, part.generation);
    }
    this.log("info", "cached desired state loaded", { version: cached.data.version, deployments: [...this.applied].map(([d, g]) => `${d}@g${g}`) });
    return cached.data;
  }

  /** The control plane's desired-state version; a different one than applied means: converge. */
  noteVersion(version: number | undefined) {
    if (version !== undefined && version !== this.appliedVersion) void this.converge().catch((e) => this.log("warn", "could not apply deployments", { error: String(e) }));
  }

  /** Makes sure the call's deployment generation is applied here before it runs. */
  async ensure(call: CallContext): Promise<string> {
    if (this.applied.get(call.deployment) !== call.generation) await this.converge();
    if (this.applied.get(call.deployment) !== call.generation) throw new Error(`deployment ${call.deployment} generation ${call.generation} is not applied on this device`);
    return this.dir(call.deployment, call.generation, call.module);
  }

  /** Calls of one deployment's module run one at a time: they share its directory (and maybe its instance). */
  serialize<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return run;
  }

  private async convergeOnce() {
    const desired = await this.client.desiredDeployments();
    const states: AppliedReport["states"] = [];
    const wanted = new Map(desired.deployments.map((p) => [p.deployment, p.generation]));
    for (const part of desired.deployments) {
      if (this.applied.get(part.deployment) === part.generation) {
        // Same generation, maybe without its kept one now (the rollout committed): drop what is no longer kept.
        await this.pruneGenerations(part).catch(() => undefined);
        continue;
      }
      if (this.applied.has(part.deployment)) this.onRetired(part.deployment);
      try {
        await this.apply(part);
        this.applied.set(part.deployment, part.generation);
        states.push({ deployment: part.deployment, generation: part.generation, state: "active", reason: null });
        this.log("info", "deployment applied", { deployment: part.deployment, generation: part.generation, modules: part.modules.map((m) => m.name) });
      } catch (e) {
        this.applied.delete(part.deployment);
        states.push({ deployment: part.deployment, generation: part.generation, state: "failed", reason: String(e instanceof Error ? e.message : e).slice(0, 2000) });
        this.log("warn", "deployment failed", { deployment: part.deployment, error: String(e) });
      }
    }
    await this.removeUnwanted(wanted);
    await mkdir(this.root, { recursive: true });
    await writeFileAtomic(this.cacheFile, JSON.stringify(desired));
    if (states.length > 0) await this.client.reportDeployments(states);
    this.appliedVersion = desired.version;
  }

  private async apply(part: DevicePart) {
    const base = join(this.root, part.deployment);
    // Files already on disk from other generations (a rollout's kept previous version): a rollback
    // to them copies instead of downloading.
    const onDisk = await this.filesByDigest(base);
    for (const m of part.modules) {
      await this.modules.get(m.digest); // fetched, verified and compiled before the first call
      const dir = this.dir(part.deployment, part.generation, m.name);
      await mkdir(dir, { recursive: true });
      for (const file of m.mounts) {
        const dest = join(dir, file.name);
        const present = await readFile(dest).catch(() => null);
        if (present && (await sha256Hex(present)) === file.digest) continue;
        const local = onDisk.get(file.digest);
        const kept = local ? await readFile(local).catch(() => null) : null;
        const bytes = kept && (await sha256Hex(kept)) === file.digest ? kept : await this.client.dataFile(part.deployment, file.digest);
        const actual = await sha256Hex(bytes);
        if (actual !== file.digest) throw new Error(`data file ${file.name} arrived with sha256 ${actual}, expected ${file.digest}`);
        await writeFile(`${dest}.tmp`, bytes);
        await rename(`${dest}.tmp`, dest);
      }
    }
    await this.pruneGenerations(part);
  }

  /** Older generations of a deployment go (a redeploy runs from clean directories), except the one the part says to keep. */
  private async pruneGenerations(part: DevicePart) {
    const base = join(this.root, part.deployment);
    const keep = new Set([`g${part.generation}`, ...(part.keep !== undefined ? [`g${part.keep}`] : [])]);
    for (const entry of await readdir(base).catch(() => [] as string[])) {
      if (!keep.has(entry)) await rm(join(base, entry), { recursive: true, force: true });
    }
  }

  /** Every file under a deployment's generation directories, by content: sha256 -> path. */
  private async filesByDigest(base: string): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    for (const gen of await readdir(base).catch(() => [] as string[])) {
      for (const mod of await readdir(join(base, gen)).catch(() => [] as string[])) {
        for (const name of await readdir(join(base, gen, mod)).catch(() => [] as string[])) {
          if (name.endsWith(".tmp")) continue;
          const path = join(base, gen, mod, name);
          const bytes = await readFile(path).catch(() => null);
          if (bytes) found.set(await sha256Hex(bytes), path);
        }
      }
    }
    return found;
  }

  /** Deployments not desired any more lose their directories (also ones left on disk from before a restart). */
  private async removeUnwanted(wanted: Map<string, number>) {
    const retired = [...this.applied.keys()].filter((id) => !wanted.has(id));
    for (const id of retired) {
      this.applied.delete(id);
      this.onRetired(id);
    }
    for (const entry of await readdir(this.root).catch(() => [] as string[])) {
      if (!wanted.has(entry)) await rm(join(this.root, entry), { recursive: true, force: true });
    }
    for (const id of retired) this.log("info", "deployment removed", { deployment: id });
  }
}
