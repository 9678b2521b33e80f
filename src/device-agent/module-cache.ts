/**
 * Modules by digest: on disk (verified against their sha256 before use) and
 * compiled in memory, with the memory cap written into the binary so a guest
 * cannot grow past it.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sha256Hex } from "../core/crypto.js";
import { capMemory, inspect, WasmFormatError, type WasmInspection } from "../wasm/binary.js";
import type { ControlPlaneClient } from "./api-client.js";
import { DOWNLOAD_RETRY, retryTransient, type RetryPolicy } from "./transient-retry.js";

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
    /** a download the link broke is tried again (transient-retry.ts) before the job's attempt fails "module-unavailable" */
    private readonly retry: RetryPolicy = DOWNLOAD_RETRY,
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

  /** The module's bytes from the control plane, verified; a download the link broke is tried again. */
  private download(digest: string): Promise<Uint8Array<ArrayBuffer>> {
    return retryTransient(async () => {
      const fetched = await this.client.moduleBinary(digest);
      const actual = await sha256Hex(fetched);
      if (actual !== digest) throw new Error(`module ${digest} arrived with sha256 ${actual}; refusing it`);
      return fetched;
    }, this.retry);
  }
}
