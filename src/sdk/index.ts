/**
 * Typed client for the wasmvisor control plane, built on the protocol schemas.
 * Errors come back as `WasmvisorError` carrying the RFC 9457 problem.
 */
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from "jose";
import { EventSourceParserStream, type EventSourceMessage } from "eventsource-parser/stream";
import { fetchOrExplain, fetchRetryingOnce, isRepeatable } from "./fetch-retry.js";
export { UnreachableError } from "./fetch-retry.js";
import { JobChannel } from "./channel.js";
export { ChannelError, JobChannel, type ChannelAnswer, type ChannelSubmitOptions } from "./channel.js";
import type { ScheduleCreateInput, ScheduleView } from "../protocol/schedule.js";
import type { ServiceSpec as ServiceSpecSchema, ServiceView } from "../protocol/service.js";
import type { z } from "zod";
/** A service as a client writes it (defaults may be left out). */
export type ServiceSpecInput = z.input<typeof ServiceSpecSchema>;
import type { CallAccepted, EventFilter, FleetEvent, DeploymentManifestInput, DeploymentView, DeviceView, JobLogs, JobSubmissionInput, JobView, KeyView, LogLine, ModuleInfo, OrchestratorKeyView, Problem, Role, SigningAlgorithm } from "../protocol/index.js";

export * from "../protocol/index.js";

/** The events of a text/event-stream body, parsed by a maintained SSE parser. */
async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<EventSourceMessage> {
  const text = body.pipeThrough(new TextDecoderStream() as unknown as ReadableWritablePair<string, Uint8Array>);
  const reader = text.pipeThrough(new EventSourceParserStream()).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

export class WasmvisorError extends Error {
  constructor(readonly status: number, readonly problem: Partial<Problem>) {
    super(`${status} ${problem.title ?? "error"}${problem.detail ? `: ${problem.detail}` : ""}`);
  }
}

/** A new orchestrator signing key pair, as JWKs (keep the private one secret). */
export async function generateSigningKey(alg: SigningAlgorithm = "EdDSA", kid: string = crypto.randomUUID()): Promise<{ privateJwk: JWK; publicJwk: JWK }> {
  const pair = await generateKeyPair(alg, { extractable: true });
  return { privateJwk: { ...(await exportJWK(pair.privateKey)), kid, alg }, publicJwk: { ...(await exportJWK(pair.publicKey)), kid } };
}

/** Signs a job submission as a compact JWT (`job` claim; exp, iat, jti set) with a private JWK carrying kid and alg. */
export function signJob(privateJwk: JWK, job: JobSubmissionInput, ttlSeconds = 300): Promise<string> {
  return signClaim(privateJwk, "job", job, ttlSeconds);
}

/** Signs a deployment manifest as a compact JWT (`deployment` claim) for POST /v1/deployments. */
export function signDeployment(privateJwk: JWK, manifest: DeploymentManifestInput, ttlSeconds = 300): Promise<string> {
  return signClaim(privateJwk, "deployment", manifest, ttlSeconds);
}

async function signClaim(privateJwk: JWK, claim: string, value: unknown, ttlSeconds: number): Promise<string> {
  if (!privateJwk.kid || !privateJwk.alg) throw new Error("the private JWK needs kid and alg (EdDSA or ES256)");
  return new SignJWT({ [claim]: value })
    .setProtectedHeader({ alg: privateJwk.alg, kid: privateJwk.kid })
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
    .setJti(crypto.randomUUID())
    .sign(await importJWK(privateJwk, privateJwk.alg));
}

export interface JobListItem {
  id: string;
  device: string;
  state: string;
  function: string;
  module: string;
  createdAt: string;
  updatedAt: string;
}

export interface EventsOptions {
  filters?: EventFilter;
  /** resume after this event id (Last-Event-ID) */
  lastEventId?: string;
  /** without lastEventId: start with the newest N stored events that pass the filters */
  tail?: number;
  /** false: the stored events only, then the iterator ends (default: follow live, reconnecting) */
  follow?: boolean;
  /** for a key that spans all namespaces */
  namespace?: string;
  signal?: AbortSignal;
  /** some events were missed for good: they left the replay window while disconnected */
  onGap?: (gap: { after: number; oldest: number }) => void;
}

const pause = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

export class RpcError extends Error {
  constructor(readonly code: number, message: string, readonly data?: unknown) {
    super(`${code}: ${message}`);
  }
}

export interface ClientOptions {
  /** control plane URL, e.g. http://127.0.0.1:8787 */
  server: string;
  /** an API key (wvk.…) or the admin token */
  token: string;
}

export class WasmvisorClient {
  readonly server: string;
  constructor(private readonly opts: ClientOptions) {
    this.server = opts.server.replace(/\/+$/, "");
  }

  /** One HTTP call; answers the parsed body and status, throwing on 4xx/5xx. */
  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: T }> {
    const isBinary = body instanceof Uint8Array;
    const res = await fetchRetryingOnce(
      this.server + path,
      {
        method,
        headers: {
          authorization: `Bearer ${this.opts.token}`,
          ...(body === undefined ? {} : { "content-type": isBinary ? "application/wasm" : "application/json" }),
          ...headers,
        },
        body: body === undefined ? undefined : isBinary ? (body as Uint8Array<ArrayBuffer>) : JSON.stringify(body),
      },
      isRepeatable(method, headers),
    );
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : null;
    if (!res.ok) throw new WasmvisorError(res.status, parsed ?? {});
    return { status: res.status, body: parsed as T };
  }

  async uploadModule(bytes: Uint8Array): Promise<ModuleInfo> {
    return (await this.request<ModuleInfo>("POST", "/v1/modules", bytes)).body;
  }

  /** Submits a job; an Idempotency-Key (random unless given) makes a retry after a lost connection safe. */
  async submitJob(job: JobSubmissionInput, idempotencyKey: string = crypto.randomUUID()): Promise<JobView> {
    return (await this.request<JobView>("POST", "/v1/jobs", job, { "idempotency-key": idempotencyKey })).body;
  }

  /** Submits a job signed with `signJob` (required where the namespace demands signatures). */
  async submitSignedJob(token: string, waitSeconds = 0): Promise<{ done: boolean; job: JobView }> {
    const res = await this.postJose<JobView>(`/v1/jobs/signed?wait=${waitSeconds}`, token);
    return { done: res.status === 200, job: res.body };
  }

  /** Deploys a manifest signed with `signDeployment`; devices apply it and report (see getDeployment). */
  async deploy(token: string): Promise<DeploymentView> {
    return (await this.postJose<DeploymentView>("/v1/deployments", token)).body;
  }

  async listDeployments(params: { limit?: number; cursor?: string } = {}) {
    const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    return (await this.request<{ deployments: { namespace: string; id: string; source: string; generation: number; updatedAt: string }[]; next: string | null }>("GET", `/v1/deployments?${q}`)).body;
  }

  async getDeployment(id: string): Promise<DeploymentView> {
    return (await this.request<DeploymentView>("GET", `/v1/deployments/${encodeURIComponent(id)}`)).body;
  }

  /** Polls until every device has applied the deployment (active) or one failed. */
  async waitForDeployment(id: string, { timeoutSeconds = 60 } = {}): Promise<DeploymentView> {
    const until = Date.now() + timeoutSeconds * 1000;
    for (;;) {
      const d = await this.getDeployment(id);
      if (d.state === "active" || d.state === "failed" || Date.now() > until) return d;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async removeDeployment(id: string): Promise<{ id: string; devices: string[] }> {
    return (await this.request<{ id: string; devices: string[] }>("DELETE", `/v1/deployments/${encodeURIComponent(id)}`)).body;
  }

  /** Calls a deployed function with named parameters (query string); answers at once with the job to wait for. */
  async callFunction(deployment: string, module: string, fn: string, params: Record<string, string | number | boolean> = {}, device?: string): Promise<CallAccepted> {
    const query = new URLSearchParams(Object.entries({ ...params, ...(device ? { device } : {}) }).map(([k, v]) => [k, String(v)]));
    const path = `/v1/deployments/${encodeURIComponent(deployment)}/modules/${encodeURIComponent(module)}/${encodeURIComponent(fn)}?${query}`;
    return (await this.request<CallAccepted>("POST", path)).body;
  }

  /** Calls a deployed function and waits up to `waitSeconds` for it in the same request (`Prefer: wait`). */
  async runFunction(deployment: string, module: string, fn: string, params: Record<string, string | number | boolean> = {}, waitSeconds = 30, device?: string): Promise<{ done: boolean; job: JobView }> {
    const query = new URLSearchParams(Object.entries({ ...params, ...(device ? { device } : {}) }).map(([k, v]) => [k, String(v)]));
    const path = `/v1/deployments/${encodeURIComponent(deployment)}/modules/${encodeURIComponent(module)}/${encodeURIComponent(fn)}?${query}`;
    const res = await this.request<JobView | CallAccepted>("POST", path, undefined, { prefer: `wait=${waitSeconds}` });
    if (res.status === 200) return { done: true, job: res.body as JobView };
    return { done: false, job: await this.getJob((res.body as CallAccepted).job) };
  }

  /** The device's wasmiot facade label (the same one each time; `rotate` issues a new one): it answers as a wasmiot supervisor at `host`. */
  async exposeWasmiotFacade(deviceId: string, options: { rotate?: boolean } = {}): Promise<{ device: string; label: string; host: string; pathBase: string }> {
    return (await this.request<{ device: string; label: string; host: string; pathBase: string }>("POST", `/v1/devices/${deviceId}/wasmiot-facade${options.rotate ? "?rotate=true" : ""}`)).body;
  }


  private async postJose<T>(path: string, token: string): Promise<{ status: number; body: T }> {
    const res = await fetchOrExplain(this.server + path, {
      method: "POST",
      headers: { authorization: `Bearer ${this.opts.token}`, "content-type": "application/jose" },
      body: token,
    });
    const body = (await res.json()) as T & Partial<Problem>;
    if (!res.ok) throw new WasmvisorError(res.status, body);
    return { status: res.status, body };
  }

  /** Registers an orchestrator's public JWK so jobs it signs are accepted. */
  async trustOrchestratorKey(jwk: JWK, label?: string, namespace?: string): Promise<OrchestratorKeyView> {
    return (await this.request<OrchestratorKeyView>("POST", "/v1/orchestrator-keys", { jwk, ...(label ? { label } : {}), ...(namespace ? { namespace } : {}) })).body;
  }

  /**
   * Opens the streaming submission channel (GET /v1/jobs/channel): one WebSocket for many
   * submissions, each answered as `runJob` would be, without an HTTP request per job.
   */
  channel(): Promise<JobChannel> {
    return JobChannel.open(this.server, this.opts.token);
  }

  /** Creates the job and waits up to `waitSeconds` for it to end, in one request (`done` says whether it did). */
  async runJob(job: JobSubmissionInput, waitSeconds: number, idempotencyKey: string = crypto.randomUUID()): Promise<{ done: boolean; job: JobView }> {
    const r = await this.request<JobView>("POST", `/v1/jobs?wait=${waitSeconds}`, job, { "idempotency-key": idempotencyKey });
    return { done: r.status === 200, job: r.body };
  }

  async getJob(id: string): Promise<JobView> {
    return (await this.request<JobView>("GET", `/v1/jobs/${id}`)).body;
  }

  /** The job once it has ended, or as it stands after `waitSeconds` (then `done` is false). */
  async jobResult(id: string, waitSeconds = 0): Promise<{ done: boolean; job: JobView }> {
    const r = await this.request<JobView>("GET", `/v1/jobs/${id}/result?wait=${waitSeconds}`);
    return { done: r.status === 200, job: r.body };
  }

  /** Waits until the job ends, asking again every `pollSeconds` (each ask blocks server-side). */
  async waitForJob(id: string, { timeoutSeconds = 120, pollSeconds = 25 } = {}): Promise<JobView> {
    const until = Date.now() + timeoutSeconds * 1000;
    for (;;) {
      const left = Math.max(0, (until - Date.now()) / 1000);
      const r = await this.jobResult(id, Math.min(pollSeconds, left));
      if (r.done) return r.job;
      if (Date.now() >= until) throw new Error(`job ${id} did not end within ${timeoutSeconds}s (state ${r.job.state})`);
    }
  }

  /** Calls a JSON-RPC method (Hero naming, see rpc.discover); a JSON-RPC error is thrown as RpcError. */
  async rpc<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.rpcId;
    const { body } = await this.request<{ result?: T; error?: { code: number; message: string; data?: unknown } }>("POST", "/rpc", { jsonrpc: "2.0", method, params, id });
    if (body.error) throw new RpcError(body.error.code, body.error.message, body.error.data);
    return body.result as T;
  }
  private rpcId = 0;

  async listJobs(params: { device?: string; status?: string; limit?: number; cursor?: string } = {}) {
    const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    return (await this.request<{ jobs: JobListItem[]; nextCursor: string | null }>("GET", `/v1/jobs?${q}`)).body;
  }

  async jobLogs(id: string): Promise<JobLogs> {
    return (await this.request<JobLogs>("GET", `/v1/jobs/${id}/logs`)).body;
  }

  /** Yields the job's output lines as they are written, until the job ends. */
  async *followLogs(id: string): AsyncGenerator<LogLine & { seq: number }, { state: string }> {
    const res = await fetchOrExplain(`${this.server}/v1/jobs/${id}/logs?follow=1`, { headers: { authorization: `Bearer ${this.opts.token}` } });
    if (!res.ok || !res.body) throw new WasmvisorError(res.status, ((await res.json().catch(() => ({}))) as Partial<Problem>) ?? {});
    for await (const event of serverSentEvents(res.body)) {
      const data = JSON.parse(event.data) as unknown;
      if (event.event === "end") return data as { state: string };
      if (event.event === "line") yield data as LogLine & { seq: number };
    }
    return { state: "UNKNOWN" };
  }

  /**
   * The namespace's event stream (GET /v1/events) as an async iterator. It reconnects when
   * the connection drops (after a second, longer after repeated failures),
   * sending the last id seen as Last-Event-ID, so no event is missed or repeated while it is
   * in the replay window (a `gap` callback hears when some had left it). `follow: false`:
   * only what is stored now (with `tail` or `lastEventId`), then it ends. Stop it with
   * `signal`, or by leaving the loop.
   */
  async *events(opts: EventsOptions = {}): AsyncGenerator<FleetEvent> {
    let last = opts.lastEventId;
    let retryMs = 1_000;
    let failures = 0;
    for (;;) {
      const params = new URLSearchParams();
      const f = opts.filters ?? {};
      if (f.device) params.set("device", f.device);
      if (f.job) params.set("job", f.job);
      if (f.deployment) params.set("deployment", f.deployment);
      if (f.kinds?.length) params.set("kind", f.kinds.join(","));
      if (opts.namespace) params.set("namespace", opts.namespace);
      if (last === undefined && opts.tail) params.set("tail", String(opts.tail));
      if (opts.follow === false) params.set("wait", "0");
      let res: Response;
      try {
        res = await fetchOrExplain(`${this.server}/v1/events?${params}`, {
          headers: { authorization: `Bearer ${this.opts.token}`, accept: "text/event-stream", ...(last !== undefined ? { "last-event-id": last } : {}) },
          signal: opts.signal,
        });
      } catch (e) {
        if (opts.signal?.aborted || opts.follow === false) throw e;
        await pause(Math.min(30_000, retryMs * 2 ** failures++), opts.signal);
        continue;
      }
      if (!res.ok || !res.body) {
        const problem = (await res.json().catch(() => ({}))) as Partial<Problem>;
        // A refusal (bad filter, credential) does not get better by retrying; an outage may.
        if (res.status < 500 || opts.follow === false) throw new WasmvisorError(res.status, problem);
        await pause(Math.min(30_000, retryMs * 2 ** failures++), opts.signal);
        continue;
      }
      failures = 0;
      try {
        for await (const m of serverSentEvents(res.body)) {
          if (m.event === "gap") {
            opts.onGap?.(JSON.parse(m.data) as { after: number; oldest: number });
            continue;
          }
          if (m.id !== undefined) last = m.id;
          yield JSON.parse(m.data) as FleetEvent;
        }
      } catch (e) {
        if (opts.signal?.aborted) return;
        if (opts.follow === false) throw e;
      }
      if (opts.follow === false || opts.signal?.aborted) return;
      await pause(retryMs, opts.signal);
    }
  }

  async cancelJob(id: string): Promise<JobView> {
    return (await this.request<JobView>("POST", `/v1/jobs/${id}/cancel`)).body;
  }

  async listDevices(params: { limit?: number; cursor?: string; status?: "online" | "offline" } = {}) {
    const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    return (await this.request<{ devices: DeviceView[]; nextCursor: string | null }>("GET", `/v1/devices?${q}`)).body;
  }

  async getDevice(id: string): Promise<DeviceView> {
    return (await this.request<DeviceView>("GET", `/v1/devices/${id}`)).body;
  }

  async createKey(role: Role, label?: string, namespace?: string): Promise<KeyView & { key: string }> {
    return (await this.request<KeyView & { key: string }>("POST", "/v1/keys", { role, ...(label ? { label } : {}), ...(namespace ? { namespace } : {}) })).body;
  }

  async listKeys(): Promise<KeyView[]> {
    return (await this.request<{ keys: KeyView[] }>("GET", "/v1/keys")).body.keys;
  }

  async revokeKey(id: string): Promise<KeyView> {
    return (await this.request<KeyView>("DELETE", `/v1/keys/${id}`)).body;
  }

  // ---- schedules (docs/schedules.md) ----

  /** Schedules a job (cron in a time zone, or once at/after a time) on a device; each occurrence runs at most once. */
  async createSchedule(device: string, schedule: ScheduleCreateInput): Promise<ScheduleView> {
    return (await this.request<ScheduleView>("POST", `/v1/devices/${device}/schedules`, schedule)).body;
  }

  async listSchedules(device: string): Promise<ScheduleView[]> {
    return (await this.request<{ schedules: ScheduleView[] }>("GET", `/v1/devices/${device}/schedules`)).body.schedules;
  }

  async getSchedule(device: string, id: string): Promise<ScheduleView> {
    return (await this.request<ScheduleView>("GET", `/v1/devices/${device}/schedules/${id}`)).body;
  }

  async pauseSchedule(device: string, id: string): Promise<ScheduleView> {
    return (await this.request<ScheduleView>("POST", `/v1/devices/${device}/schedules/${id}/pause`)).body;
  }

  async resumeSchedule(device: string, id: string): Promise<ScheduleView> {
    return (await this.request<ScheduleView>("POST", `/v1/devices/${device}/schedules/${id}/resume`)).body;
  }

  async removeSchedule(device: string, id: string): Promise<{ id: string }> {
    return (await this.request<{ id: string }>("DELETE", `/v1/devices/${device}/schedules/${id}`)).body;
  }

  // ---- services (docs/services.md) ----

  async createService(device: string, spec: ServiceSpecInput): Promise<ServiceView> {
    return (await this.request<ServiceView>("POST", `/v1/devices/${device}/services`, spec)).body;
  }

  async listServices(device: string): Promise<ServiceView[]> {
    return (await this.request<{ services: ServiceView[] }>("GET", `/v1/devices/${device}/services`)).body.services;
  }

  async getService(device: string, name: string): Promise<ServiceView> {
    return (await this.request<ServiceView>("GET", `/v1/devices/${device}/services/${name}`)).body;
  }

  /** suspend, resume, kill, cancel (a pending start) or reset (the restart budget) */
  async serviceAction(device: string, name: string, action: "suspend" | "resume" | "kill" | "cancel" | "reset"): Promise<ServiceView> {
    return (await this.request<ServiceView>("POST", `/v1/devices/${device}/services/${name}/${action}`)).body;
  }

  async removeServices(device: string, names: string[]): Promise<{ removed: string[]; absent: string[] }> {
    return (await this.request<{ removed: string[]; absent: string[] }>("POST", `/v1/devices/${device}/services/remove`, { names })).body;
  }

  async serviceLogs(device: string, name: string, params: { limit?: number; after?: number } = {}): Promise<(LogLine & { seq: number })[]> {
    const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    return (await this.request<{ lines: (LogLine & { seq: number })[] }>("GET", `/v1/devices/${device}/services/${name}/logs?${q}`)).body.lines;
  }

  /** Follows a service's output (server-sent events) until it is removed or `seconds` pass. */
  async *followServiceLogs(device: string, name: string, opts: { after?: number; seconds?: number; signal?: AbortSignal } = {}): AsyncGenerator<LogLine & { seq: number }> {
    const q = new URLSearchParams({ follow: "1", after: String(opts.after ?? 0), seconds: String(opts.seconds ?? 600) });
    const res = await fetchOrExplain(`${this.server}/v1/devices/${device}/services/${name}/logs?${q}`, {
      headers: { authorization: `Bearer ${this.opts.token}`, accept: "text/event-stream" },
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (!res.ok || !res.body) throw new WasmvisorError(res.status, ((await res.json().catch(() => null)) as Partial<Problem> | null) ?? {});
    for await (const ev of serverSentEvents(res.body)) {
      if (ev.event === "end") return;
      if (ev.event === "line") yield JSON.parse(ev.data) as LogLine & { seq: number };
    }
  }
}
