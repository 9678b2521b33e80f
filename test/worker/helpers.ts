/** Drives the real Worker inside workerd (vitest-pool-workers) the way clients do: over HTTP. */
import { SELF, env, runDurableObjectAlarm as runAlarm, runInDurableObject as runIn } from "cloudflare:test";
import { uncounted } from "../../src/platform/usage.js";
import { expect, inject } from "vitest";
import { Conformance, type OpenApiDocument } from "../helpers/conformance.js";

export const ADMIN = env.ADMIN_TOKEN!;

let documented: Promise<Conformance> | undefined;
/** Every response `call` receives is checked against /openapi.json; test/worker/setup.ts fails a file that saw a violation. */
export function conformance(): Promise<Conformance> {
  documented ??= SELF.fetch("https://wasmvisor.test/openapi.json").then(async (r) => new Conformance((await r.json()) as OpenApiDocument));
  return documented;
}

export function wasm(name: string): Uint8Array<ArrayBuffer> {
  const b64 = inject("wasm")[name];
  if (!b64) throw new Error(`no test module ${name}`);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

export async function call(
  method: string,
  path: string,
  opts: { token?: string | null; json?: unknown; body?: BodyInit; type?: string; headersExtra?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { ...opts.headersExtra };
  const token = opts.token === undefined ? ADMIN : opts.token;
  if (token) headers.authorization = `Bearer ${token}`;
  if (opts.json !== undefined) headers["content-type"] = "application/json";
  if (opts.type) headers["content-type"] = opts.type;
  const res = await SELF.fetch(`https://wasmvisor.test${path}`, {
    method,
    headers,
    body: opts.json !== undefined ? JSON.stringify(opts.json) : opts.body,
  });
  const documented = await conformance();
  // The wasmiot facade answered by host name is documented under /wasmiot/{device}/.
  const host = opts.headersExtra?.host;
  const checkedPath = (host && host !== "wasmvisor.test" ? `/wasmiot/by-host${path}` : path).split("?")[0]!;
  if (res.headers.get("content-type") === "application/wasm") {
    const bytes = new Uint8Array(await res.arrayBuffer());
    documented.check(method, checkedPath, res.status, res.headers.get("content-type"), bytes.length > 0 ? "binary" : "");
    return { status: res.status, type: res.headers.get("content-type"), body: bytes, headers: res.headers };
  }
  const text = await res.text();
  documented.check(method, checkedPath, res.status, res.headers.get("content-type"), text);
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  return { status: res.status, type: res.headers.get("content-type"), body, headers: res.headers };
}

export const DESCRIPTION = {
  platform: { memory: { bytes: 1 << 30 }, cpu: { humanReadableName: "test cpu", clockSpeed: { Hz: 1e9 } } },
  supervisorInterfaces: ["fd_write", "proc_exit"],
};

export async function registerDevice(name = "dev") {
  const key = await call("POST", "/v1/keys", { json: { role: "register" } });
  const reg = await call("POST", "/v1/devices/register", { token: key.body.key, json: { name, description: DESCRIPTION } });
  if (reg.status !== 201) throw new Error(JSON.stringify(reg.body));
  return reg.body as { deviceId: string; credential: string };
}

export async function uploadModule(name: string) {
  const res = await call("POST", "/v1/modules", { body: wasm(name), type: "application/wasm" });
  if (res.status !== 201 && res.status !== 200) throw new Error(JSON.stringify(res.body));
  return res.body.digest as string;
}

export async function submit(device: string, module: string, fn: string, args: unknown[] = [], extra: Record<string, unknown> = {}) {
  return call("POST", "/v1/jobs", { json: { device, module, function: fn, args, ...extra } });
}

export const poll = (credential: string, max = 16, wait = 0) => call("GET", `/v1/agent/jobs?wait=${wait}&max=${max}`, { token: credential });

/** A job's result as an agent reports it: `value`, exit code null, no output, 1 ms. */
export const result = (value: unknown) => ({ value, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 1 });

export function report(credential: string, jobId: string, leaseToken: string, value: unknown = 1, outcome = "succeeded", error: unknown = null) {
  return call("POST", "/v1/agent/results", {
    token: credential,
    json: { results: [{ jobId, leaseToken, outcome, error, result: result(value) }] },
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function health() {
  return { cpuPercent: 12.5, memoryUsedBytes: 1, memoryTotalBytes: 2, loadAverage: [0.1, 0.2, 0.3], uptimeSeconds: 5, diskFreeBytes: 10, jobsRunning: 0 };
}

/**
 * Opens a WebSocket on `path` with `token` as the bearer (the upgrade must answer 101) and
 * queues every message it receives, each through `parse`. `next(pred)` takes the first queued
 * message that matches, waiting up to `timeoutMs` (or the call's own timeout); `all` keeps
 * every message, taken or not; `closed()` is the close the server sent, if any.
 */
export async function openSocket<T>(path: string, token: string, parse: (data: string) => T, timeoutMs: number) {
  const res = await SELF.fetch(`https://wasmvisor.test${path}`, { headers: { upgrade: "websocket", authorization: `Bearer ${token}` } });
  expect(res.status).toBe(101);
  const ws = res.webSocket!;
  ws.accept();
  const inbox: T[] = [];
  const all: T[] = [];
  const waiters: (() => void)[] = [];
  let closed: { code: number; reason: string } | null = null;
  ws.addEventListener("message", (e) => {
    const m = parse(e.data as string);
    inbox.push(m);
    all.push(m);
    for (const w of waiters.splice(0)) w();
  });
  ws.addEventListener("close", (e) => (closed = { code: e.code, reason: e.reason }));
  const next = async (pred: (m: T) => boolean = () => true, ms = timeoutMs): Promise<T> => {
    const end = Date.now() + ms;
    for (;;) {
      const i = inbox.findIndex(pred);
      if (i >= 0) return inbox.splice(i, 1)[0]!;
      if (Date.now() > end) throw new Error(`no matching message; inbox: ${JSON.stringify(inbox).slice(0, 2000)}`);
      await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(50)]);
    }
  };
  const send = (m: unknown) => ws.send(typeof m === "string" ? m : JSON.stringify(m));
  return { ws, inbox, all, next, send, closed: () => closed };
}

/**
 * An agent's push connection (GET /v1/agent/ws) as the device `credential`; "pong" (the answer
 * to a "ping" keepalive) is queued as the string itself, every other message parsed as JSON.
 * With `credit`, the agent first grants that much credit and sends heartbeat 1, and this returns
 * once the heartbeat is acknowledged: messages on one socket arrive in order, so the credit has
 * arrived before anything the test submits next.
 */
export async function connectAgent(credential: string, opts: { timeoutMs?: number; credit?: number } = {}) {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- agent messages are checked field by field in the tests
  const agent = await openSocket<any>("/v1/agent/ws", credential, (d) => (d === "pong" ? "pong" : JSON.parse(d)), opts.timeoutMs ?? 10_000);
  if (opts.credit !== undefined) {
    agent.send({ t: "credit", free: opts.credit });
    agent.send({ t: "heartbeat", id: 1, health: health(), runningJobs: [] });
    await agent.next((m) => m.t === "heartbeat-ack");
  }
  return agent;
}

/**
 * What a test that walks every operation of /openapi.json needs: a credential of each role,
 * a device (and another whose credential may be rotated: rotating the first would revoke
 * `tokens.device`), a module, and a concrete path for each path template.
 */
export async function routeWalk(name: string) {
  const user = (await call("POST", "/v1/keys", { json: { role: "user" } })).body.key as string;
  const register = (await call("POST", "/v1/keys", { json: { role: "register" } })).body.key as string;
  const device = await registerDevice(name);
  const rotatable = (await registerDevice(`${name}-rotatable`)).deviceId;
  const digest = await uploadModule("math");
  const concrete = (template: string) => {
    const id = template.includes("/jobs/") ? `${device.deviceId}-aaaaaaaaaaaaaaaa` : template.startsWith("/v1/keys") ? "knotakeyatall" : template.endsWith("/credential") ? rotatable : device.deviceId;
    return template.replace("{id}", id).replace("{digest}", digest).replace(/\{\w+\}/g, "x");
  };
  return { tokens: { admin: ADMIN, user, register, device: device.credential }, deviceId: device.deviceId, digest, concrete };
}

/**
 * The pool's runInDurableObject / runDurableObjectAlarm, taking the stubs src/platform/stubs.ts
 * hands out too (those count calls for docs/cost.md through a Proxy, which the pool's native
 * type check refuses).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the instance's class differs per call site
type AnyInstanceFn<R> = (instance: any, state: DurableObjectState) => R | Promise<R>;
const poolRunIn = runIn as unknown as <R>(stub: object, fn: AnyInstanceFn<R>) => Promise<R>;
const poolRunAlarm = runAlarm as unknown as (stub: object) => Promise<boolean>;
export const runInDurableObject = <R>(stub: object, fn: AnyInstanceFn<R>): Promise<R> => poolRunIn(uncounted(stub), fn);
export const runDurableObjectAlarm = (stub: object): Promise<boolean> => poolRunAlarm(uncounted(stub));
