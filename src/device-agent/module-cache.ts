/**
 * Modules by digest: on disk (verified against their sha256 before use) and
 * compiled in memory, with the memory cap written into the binary so a guest
 * cannot grow past it.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sha256Hex } from "../core/crypto.js";
import { capMemory, inspect, WasmFormatError, type WasmInspection } from "../wasm/binary.js";
import { setTimeout as sleep } from "node:timers/promises";
import { ApiError, type ControlPlaneClient } from "./api-client.js";
import { agentBackoffMs } from "./agent-backoff.js";

/**
 * Tries of one module download before the job's attempt fails "module-unavailable". A download the
 * link broke (a cut connection, a 5xx, a 408/429) is tried again after the agent's backoff (0.5, 1,
 * 2 s...) while the lease keeper keeps the job's lease: a blip of the link does not cost the job an
 * attempt, nor the device a second run of it. A refusal (4xx) is not retried.
 */
export const MODULE_FETCH_TRIES = 5;

export interface LoadedModule {
  module: WebAssembly.Module;
  info: WasmInspection;
}

/** The module itself is unusable here (malformed, or over the memory cap): running it again would not help. */
export class ModuleRejected extends Error {
  constructor(readonly kind: "memory-limit" | "link-error", message: string) {
    super(message);
  }
}

export class ModuleCache {
  private readonly compiled = new Map<string, Promise<LoadedModule>>();
  private readonly dir: string;

  constructor(
    dataDir: string,
    private readonly client: Pick<ControlPlaneClient, "moduleBinary">,
    private readonly capPages: number,
    /** tries of one download, and the wait before try `n + 1` after `n` failed */
    private readonly retry: { tries: number; delayMs: (failures: number) => number } = { tries: MODULE_FETCH_TRIES, delayMs: agentBackoffMs },
  ) {
    this.dir = join(dataDir, "modules");
  }

  get(digest: string): Promise<LoadedModule> {
    let p = this.compiled.get(digest);
    if (!p) {
      p = this.load(digest);
      this.compiled.set(digest, p);
      // A failed load (network, bad bytes) may succeed later: do not cache the failure.
      p.catch(() => this.compiled.delete(digest));
    }
    return p;
  }

  private async load(digest: string): Promise<LoadedModule> {
    const bytes = await this.bytes(digest);
    let info: WasmInspection;
    try {
      info = inspect(bytes);
    } catch (e) {
      if (e instanceof WasmFormatError) throw new ModuleRejected("link-error", e.message);
      throw e;
    }
    const capped = capMemory(bytes, this.capPages);
    if (!capped.ok) throw new ModuleRejected("memory-limit", capped.reason);
    return { module: await WebAssembly.compile(capped.bytes), info };
  }

  private async bytes(digest: string): Promise<Uint8Array<ArrayBuffer>> {
    const file = join(this.dir, `${digest}.wasm`);
    const onDisk = await readFile(file).catch(() => null);
    if (onDisk && (await sha256Hex(onDisk)) === digest) return onDisk;
    const fetched = await this.download(digest);
    await mkdir(this.dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, fetched);
    await rename(tmp, file);
    return fetched;
  }

  /** The module's bytes from the control plane, verified; a transient failure is tried again. */
  private async download(digest: string): Promise<Uint8Array<ArrayBuffer>> {
    for (let failures = 0; ; ) {
      try {
        const fetched = await this.client.moduleBinary(digest);
        const actual = await sha256Hex(fetched);
        if (actual !== digest) throw new Error(`module ${digest} arrived with sha256 ${actual}; refusing it`);
        return fetched;
      } catch (e) {
        failures++;
        if ((e instanceof ApiError && e.permanent) || failures >= this.retry.tries) throw e;
        await sleep(this.retry.delayMs(failures));
      }
    }
  }
}
