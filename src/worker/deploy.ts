/**
 * Applying a deployment, all or nothing: every device, module, function, data
 * file and chain step is checked (and every binary and data file fetched and
 * stored) before anything is recorded; only then does the deployment object
 * take the placements and each device object its part.
 */
import { sha256Hex } from "../core/crypto.js";
import { fail, ok, type Outcome } from "../durable/rpc.js";
import { type Placement } from "../durable/deployment-object.js";
import { DEPLOYMENT_LIMITS, type DataMount, type DeploymentFailover, type DevicePart, type DeviceDeploymentStatus, type FunctionSpec, type StoredFile } from "../protocol/deployment.js";
import type { DeviceDescription } from "../protocol/device.js";
import { LIMITS } from "../protocol/job.js";
import { missingInterfaces, requiredInterfaces, type ModuleInfo } from "../protocol/wasm.js";
import { mapWithConcurrency } from "../core/concurrency.js";
import { moduleInfo, storeModule } from "./module-store.js";
import { deploymentStub, deviceStub } from "../platform/stubs.js";
import { dataKey } from "../platform/r2-keys.js";
import type { Env } from "../platform/env.js";

/** A module to place, before its binary and data files are resolved. */
export interface ModuleToPlace {
  name: string;
  /** known digest (uploaded, or to check a fetched binary against) */
  digest?: string;
  size?: number;
  url?: string;
  devices: string[];
  functions: Record<string, FunctionSpec>;
  mounts: DataMount[];
  /** re-place it on a standby while a device it is on is offline (deployment-failover.ts) */
  failover?: DeploymentFailover;
}

export interface DeployRequest {
  namespace: string;
  id: string;
  source: "signed" | "wasmiot";
  signedBy: string | null;
  modules: ModuleToPlace[];
  /** "all": the deployment is exactly this; a device: only that device's part is replaced (wasmiot sends one manifest per device) */
  scope: "all" | { device: string };
  /** may a device see this namespace's deployment (the caller's namespace, or any for a global key) */
  deviceNamespace: (deviceId: string) => Promise<string | null>;
}

const FETCH_TIMEOUT_MS = 20_000;

/** Fetches a URL's body up to `max` bytes; a failure is the manifest's problem (422), never ours. */
async function fetchBounded(url: string, max: number, what: string): Promise<Outcome<Uint8Array<ArrayBuffer>>> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: "follow" });
  } catch (e) {
    return fail("unprocessable", `could not fetch ${what} from ${url}: ${String(e)}`);
  }
  if (!res.ok) return fail("unprocessable", `fetching ${what} from ${url} answered ${res.status}`);
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > max) return fail("unprocessable", `${what} at ${url} is ${declared} bytes; the limit is ${max}`);
  // Read as a stream and stop at the limit: a body without a length must not fill the isolate's memory.
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (!res.body) return ok(new Uint8Array(0));
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel();
      return fail("unprocessable", `${what} at ${url} is over the ${max}-byte limit`);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return ok(bytes);
}

async function resolveModule(env: Env, m: ModuleToPlace): Promise<Outcome<ModuleInfo>> {
  const info = await fetchOrFindModule(env, m);
  if (info.ok && m.size !== undefined && info.value.size !== m.size) return fail("unprocessable", `module ${m.name} is ${info.value.size} bytes, not the manifest's ${m.size}`);
  return info;
}

async function fetchOrFindModule(env: Env, m: ModuleToPlace): Promise<Outcome<ModuleInfo>> {
  if (m.url) {
    const fetched = await fetchBounded(m.url, LIMITS.maxModuleBytes, `module ${m.name}`);
    if (!fetched.ok) return fetched;
    const digest = await sha256Hex(fetched.value);
    if (m.digest && digest !== m.digest) return fail("unprocessable", `module ${m.name} fetched from ${m.url} has sha256 ${digest}, not the manifest's ${m.digest}`);
    const stored = await storeModule(env, fetched.value);
    return stored.ok ? ok(stored.info) : fail("unprocessable", `module ${m.name} from ${m.url}: ${stored.detail}`);
  }
  const info = m.digest ? await moduleInfo(env, m.digest) : null;
  return info ? ok(info) : fail("unprocessable", `module ${m.name}: no module with digest ${m.digest} was uploaded, and no url was given`);
}

async function storeDataFile(env: Env, module: string, mount: DataMount): Promise<Outcome<StoredFile>> {
  let bytes: Uint8Array<ArrayBuffer>;
  if ("url" in mount) {
    const fetched = await fetchBounded(mount.url, DEPLOYMENT_LIMITS.maxDataFileBytes, `data file ${mount.name} of ${module}`);
    if (!fetched.ok) return fetched;
    bytes = fetched.value;
  } else {
    bytes = Uint8Array.from(atob(mount.base64), (ch) => ch.charCodeAt(0));
  }
  const digest = await sha256Hex(bytes);
  if ("sha256" in mount && mount.sha256 && mount.sha256 !== digest) {
    return fail("unprocessable", `data file ${mount.name} of ${module} has sha256 ${digest}, not the manifest's ${mount.sha256}`);
  }
  if (!(await env.MODULES.head(dataKey(digest)))) await env.MODULES.put(dataKey(digest), bytes, { sha256: digest });
  return ok({ name: mount.name, digest, size: bytes.length });
}

/** Every described function is an export with as many parameters as its signature takes. */
function checkFunctions(m: ModuleToPlace, info: ModuleInfo): string | null {
  for (const [fn, spec] of Object.entries(m.functions)) {
    const exp = info.exports.find((e) => e.kind === "function" && e.name === fn);
    if (!exp?.signature) return `module ${m.name} exports no function ${fn} (it exports ${info.exports.filter((e) => e.kind === "function").map((e) => e.name).join(", ")})`;
    if (exp.signature.params.length !== spec.params.length) {
      return `function ${m.name}/${fn} takes ${exp.signature.params.length} parameters; the manifest describes ${spec.params.length}`;
    }
  }
  return null;
}

/** Every device a chain step names must be in the deployment's namespace, whichever deployment the step names. */
async function checkChainTenancy(req: DeployRequest): Promise<string | null> {
  for (const m of req.modules) {
    for (const [fn, spec] of Object.entries(m.functions)) {
      const to = spec.to;
      if (!to || !("device" in to)) continue;
      if ((await req.deviceNamespace(to.device)) !== req.namespace) {
        return `${m.name}/${fn} forwards to device ${to.device}, which is not registered in namespace ${req.namespace}`;
      }
    }
  }
  return null;
}

/** Chain steps name functions this deployment places on that device, or an outside URL where that is allowed. */
function checkChains(env: Env, modules: ModuleToPlace[], source: "signed" | "wasmiot"): string | null {
  for (const m of modules) {
    for (const [fn, spec] of Object.entries(m.functions)) {
      const to = spec.to;
      if (!to) continue;
      if ("url" in to) {
        if (env.WASMIOT_EXTERNAL_FORWARDING !== "allow") return `${m.name}/${fn} forwards to ${to.url}, which names no device here, and forwarding outside is disabled`;
        continue;
      }
      if (source === "wasmiot" || to.deployment) continue; // the next device's part arrives in its own manifest
      const target = modules.find((x) => x.name === to.module);
      if (!target || !target.devices.includes(to.device) || !target.functions[to.function]) {
        return `${m.name}/${fn} forwards to ${to.module}/${to.function} on ${to.device}, which this deployment does not place there`;
      }
    }
  }
  return null;
}

export async function applyDeployment(env: Env, req: DeployRequest): Promise<Outcome<{ generation: number; devices: DeviceDeploymentStatus[] }>> {
  const devices = [...new Set(req.modules.flatMap((m) => m.devices))];
  const descriptions = new Map<string, DeviceDescription>();
  for (const d of devices) {
    if ((await req.deviceNamespace(d)) !== req.namespace) return fail("unprocessable", `device ${d} is not registered in namespace ${req.namespace}`);
    const info = await deviceStub(env, d).facadeInfo(req.namespace);
    if (!info) return fail("unprocessable", `device ${d} is not registered`);
    descriptions.set(d, info.description);
  }
  // Listed standbys must be this namespace's devices; whether each links what the module imports is checked below.
  for (const d of new Set(req.modules.flatMap((m) => m.failover?.devices ?? []))) {
    if (descriptions.has(d)) continue;
    const info = (await req.deviceNamespace(d)) === req.namespace ? await deviceStub(env, d).facadeInfo(req.namespace) : null;
    if (!info) return fail("unprocessable", `failover device ${d} is not registered in namespace ${req.namespace}`);
    descriptions.set(d, info.description);
  }
  const chainProblem = (await checkChainTenancy(req)) ?? checkChains(env, req.modules, req.source);
  if (chainProblem) return fail("unprocessable", chainProblem);

  const resolved = await mapWithConcurrency(req.modules, 4, async (m) => {
    const info = await resolveModule(env, m);
    if (!info.ok) return info;
    const bad = checkFunctions(m, info.value);
    if (bad) return fail<never>("unprocessable", bad);
    const needs = requiredInterfaces(info.value.imports);
    for (const d of [...m.devices, ...(m.failover?.devices ?? [])]) {
      const missing = missingInterfaces(needs, new Set(descriptions.get(d)!.supervisorInterfaces));
      if (missing.length > 0) return fail<never>("unprocessable", `device ${d} cannot run module ${m.name}: it does not provide ${missing.join(", ")}`);
    }
    const mounts: StoredFile[] = [];
    for (const mount of m.mounts) {
      const stored = await storeDataFile(env, m.name, mount);
      if (!stored.ok) return stored;
      mounts.push(stored.value);
    }
    return ok({ module: m, info: info.value, mounts });
  });
  const refused = resolved.find((r) => !r.ok);
  if (refused && !refused.ok) return refused;

  const placed = resolved.map((r) => (r as Extract<typeof r, { ok: true }>).value);
  const placements: Placement[] = placed.flatMap((p) => p.module.devices.map((device) => ({ device, module: p.module.name, digest: p.info.digest, functions: Object.keys(p.module.functions) })));
  const failover = placed.flatMap((p) => (p.module.failover ? p.module.devices.map((home) => ({ module: p.module.name, home, policy: p.module.failover!, requires: requiredInterfaces(p.info.imports) })) : []));
  const put = await deploymentStub(env, req.namespace, req.id).put(
    { id: req.id, namespace: req.namespace, source: req.source, signedBy: req.signedBy },
    placements,
    req.scope,
    failover,
  );
  if (!put) return fail("not-found", `deployment ${req.id} belongs to another namespace`);
  const { generation, dropped } = put;
  const statuses = await mapWithConcurrency(devices, 16, async (device) => {
    const part: DevicePart = {
      deployment: req.id,
      generation,
      source: req.source,
      modules: placed.filter((p) => p.module.devices.includes(device)).map((p) => ({ name: p.module.name, digest: p.info.digest, mounts: p.mounts, functions: p.module.functions })),
    };
    const out = await deviceStub(env, device).putDeployment(req.namespace, part);
    return out.ok ? out.value : { device, generation, state: "failed" as const, reason: out.detail, updatedAt: new Date().toISOString() };
  });
  // As of this generation the dropped devices are out; a device already on a newer one keeps it.
  await mapWithConcurrency(dropped, 16, async (device) => { await deviceStub(env, device).removeDeployment(req.namespace, req.id, generation); });
  return ok({ generation, devices: statuses });
}

/** Undeploys from every device (or one, for the wasmiot facade); queued calls are canceled there. */
export async function removeDeployment(env: Env, namespace: string, id: string, scope: "all" | { device: string }): Promise<Outcome<{ devices: string[] }>> {
  const { devices, generation } = await deploymentStub(env, namespace, id).remove(namespace, scope);
  if (devices.length === 0) return fail("not-found", "deployment does not exist");
  await mapWithConcurrency(devices, 16, async (device) => { await deviceStub(env, device).removeDeployment(namespace, id, generation); });
  return ok({ devices });
}

/**
 * A rollout's new version, resolved once: every module's binary found (or fetched and
 * stored), its functions checked against its exports, its data files stored; answers the
 * modules as each device's part carries them and the host functions they need. Chains are
 * not rolled out (a chain step names devices, a rollout's targets come from its selector).
 */
export async function resolveVersion(env: Env, modules: Omit<ModuleToPlace, "devices">[]): Promise<Outcome<{ modules: DevicePart["modules"]; requires: string[] }>> {
  const chained = modules.find((m) => Object.values(m.functions).some((f) => f.to !== null));
  if (chained) return fail("unprocessable", `module ${chained.name} chains to another step; rollouts take deployments without chains`);
  const resolved = await mapWithConcurrency(modules, 4, async (m) => {
    const info = await resolveModule(env, { ...m, devices: [] });
    if (!info.ok) return info;
    const bad = checkFunctions({ ...m, devices: [] }, info.value);
    if (bad) return fail<never>("unprocessable", bad);
    const mounts: StoredFile[] = [];
    for (const mount of m.mounts) {
      const stored = await storeDataFile(env, m.name, mount);
      if (!stored.ok) return stored;
      mounts.push(stored.value);
    }
    return ok({ part: { name: m.name, digest: info.value.digest, mounts, functions: m.functions }, requires: requiredInterfaces(info.value.imports) });
  });
  const refused = resolved.find((r) => !r.ok);
  if (refused && !refused.ok) return refused;
  const done = resolved.map((r) => (r as Extract<typeof r, { ok: true }>).value);
  return ok({ modules: done.map((d) => d.part), requires: [...new Set(done.flatMap((d) => d.requires))] });
}
