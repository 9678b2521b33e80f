/** The agent's side of the wire: typed calls to the control plane with its device credential. */
import { AgentSessionOpened, Delivery, EPOCH_HEADER, ResultBatchResponse, type CommandAck, type LeaseRef, type LogBatch, type ResultReport, type Heartbeat } from "../protocol/agent.js";
import { RegistrationResult, type DeviceRegistration } from "../protocol/device.js";
import { DesiredDeployments, type AppliedReport } from "../protocol/deployment.js";
import { DesiredServices } from "../protocol/service.js";
import { problemTypeUri, type Problem } from "../protocol/problem.js";
import { z } from "zod";
import { HttpAnswer, httpRequest, httpRequestRetryingOnce, type HttpInit } from "./http-client.js";

/** A request that has not completed in this long is abandoned (and retried by its caller). */
export const REQUEST_TIMEOUT_MS = 10_000;
/** A batch of results may be up to the body limit (256 KiB): room for a slow uplink. */
const REPORT_TIMEOUT_MS = 30_000;
/** Module, data and output file transfers may be large (tens of MB) on a slow link. */
const TRANSFER_TIMEOUT_MS = 5 * 60_000;

export class RequestTimeout extends Error {
  constructor(readonly ms: number) {
    super(`no complete answer within ${ms} ms`);
    this.name = "RequestTimeout";
  }
}

const SupervisorInfo = z.object({ limits: z.record(z.string(), z.number()) });
const AckResponse = z.object({ started: z.number(), held: z.number() });
const HeartbeatResponse = z.object({ serverTime: z.number(), cancel: z.array(z.string()), deployments: z.number().int().optional(), services: z.number().int().optional() });

export class ApiError extends Error {
  constructor(readonly status: number, readonly problem: Partial<Problem> | null, what: string) {
    super(`${what}: HTTP ${status}${problem?.detail ? ` - ${problem.detail}` : problem?.title ? ` - ${problem.title}` : ""}`);
  }
  /** 4xx other than 408/429 will fail again the same way. */
  get permanent() {
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }
  /** A newer agent session took this device over (fencing): this process must stop. */
  get fenced() {
    return this.status === 409 && this.problem?.type === problemTypeUri("fenced");
  }
}

export class ControlPlaneClient {
  /** This process's agent session (fencing), once opened: sent with every request. */
  epoch: number | null = null;
  /** Told (once per refusal) when the control plane says a newer session took this device over. */
  onFenced: (detail: string) => void = () => undefined;

  constructor(readonly server: string, private credential: string | null = null) {
    this.server = server.replace(/\/+$/, "");
  }

  setCredential(credential: string) {
    this.credential = credential;
  }

  /** The headers of every agent request: the credential, and the session's epoch once there is one. */
  private authHeaders(): Record<string, string> {
    return { authorization: `Bearer ${this.credential}`, ...(this.epoch !== null ? { [EPOCH_HEADER]: String(this.epoch) } : {}) };
  }

  /** Builds the error for an answer that is not ok, telling `onFenced` when it is a fencing refusal. */
  private failure(res: HttpAnswer, what: string): ApiError {
    let problem: Partial<Problem> | null = null;
    try {
      problem = res.json() as Partial<Problem>;
    } catch {
      // not JSON: the status says it
    }
    const err = new ApiError(res.status, problem, what);
    // Only a session can be fenced: a request sent before this process opened one says nothing of it.
    if (err.fenced && this.epoch !== null) this.onFenced(err.problem?.detail ?? err.message);
    return err;
  }

  /** Opens this process's agent session: its epoch is sent with every request from now on. */
  async openSession(): Promise<AgentSessionOpened> {
    const opened = await this.call("open session", "/v1/agent/session", { method: "POST" }, AgentSessionOpened, { repeatable: false });
    this.epoch = opened.epoch;
    return opened;
  }

  /**
   * One request, bounded in time from start to the last byte of its body. The timer is a plain
   * (referenced) one on purpose: AbortSignal.timeout's is unref'd, and a process whose only pending
   * work is a fetch that never settles (a listener that accepts and closes at once) exits with code 13.
   */
  private async timed<T>(timeoutMs: number, outer: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new RequestTimeout(timeoutMs)), timeoutMs);
    try {
      return await fn(outer ? AbortSignal.any([outer, timeout.signal]) : timeout.signal);
    } catch (e) {
      throw timeout.signal.aborted ? timeout.signal.reason : e;
    } finally {
      clearTimeout(timer);
    }
  }

  private call<S extends z.ZodType>(what: string, path: string, init: HttpInit, schema: S, opts: { signal?: AbortSignal; repeatable?: boolean; timeoutMs?: number } = {}): Promise<z.infer<S>> {
    return this.timed(opts.timeoutMs ?? REQUEST_TIMEOUT_MS, opts.signal, async (signal) => {
      // Agent calls may be repeated (polls and acks are covered by leases, results and logs by lease tokens);
      // registration is the exception: a repeat would register a second device.
      const res = await httpRequestRetryingOnce(
        this.server + path,
        { ...init, signal, headers: { ...this.authHeaders(), ...(init.body ? { "content-type": "application/json" } : {}), ...init.headers } },
        opts.repeatable ?? true,
      );
      if (!res.ok) throw this.failure(res, what);
      return schema.parse(res.json());
    });
  }

  register(registerToken: string, body: DeviceRegistration) {
    return this.call("register", "/v1/devices/register", { method: "POST", body: JSON.stringify(body), headers: { authorization: `Bearer ${registerToken}` } }, RegistrationResult, { repeatable: false });
  }

  poll(waitSeconds: number, max: number, signal?: AbortSignal) {
    return this.call("poll", `/v1/agent/jobs?wait=${waitSeconds}&max=${max}`, { method: "GET" }, Delivery, { ...(signal ? { signal } : {}), timeoutMs: waitSeconds * 1000 + REQUEST_TIMEOUT_MS });
  }

  /** What this control plane is and its limits (the request body limit results are batched to). */
  info() {
    return this.call("info", "/v1/info", { method: "GET" }, SupervisorInfo);
  }

  /** Acks are retried soon by the agent, so one that hangs is given up on well inside the ack window. */
  ack(started: LeaseRef[], held: LeaseRef[] = [], timeoutMs = REQUEST_TIMEOUT_MS) {
    return this.call("ack", "/v1/agent/acks", { method: "POST", body: JSON.stringify({ started, held }) }, AckResponse, { timeoutMs });
  }

  report(results: ResultReport[]) {
    return this.call("report", "/v1/agent/results", { method: "POST", body: JSON.stringify({ results }) }, ResultBatchResponse, { timeoutMs: REPORT_TIMEOUT_MS });
  }

  logs(batch: LogBatch) {
    return this.call("logs", "/v1/agent/logs", { method: "POST", body: JSON.stringify(batch) }, z.object({ accepted: z.number() }));
  }

  commandAcks(acks: CommandAck[]) {
    return this.call("command acks", "/v1/agent/commands/acks", { method: "POST", body: JSON.stringify({ acks }) }, z.object({ recorded: z.number() }));
  }

  heartbeat(hb: Heartbeat) {
    return this.call("heartbeat", "/v1/agent/heartbeat", { method: "POST", body: JSON.stringify(hb) }, HeartbeatResponse);
  }

  desiredDeployments() {
    return this.call("desired deployments", "/v1/agent/deployments", { method: "GET" }, DesiredDeployments);
  }

  desiredServices() {
    return this.call("desired services", "/v1/agent/services", { method: "GET" }, DesiredServices);
  }

  reportDeployments(states: AppliedReport["states"]) {
    return this.call("report deployments", "/v1/agent/deployments/status", { method: "POST", body: JSON.stringify({ states }) }, z.object({ updated: z.number() }));
  }

  moduleBinary(digest: string) {
    return this.download(`/v1/modules/${digest}/binary`, `download module ${digest}`);
  }

  dataFile(deployment: string, digest: string) {
    return this.download(`/v1/agent/deployments/${encodeURIComponent(deployment)}/data/${digest}`, `download data file ${digest}`);
  }

  inputFile(jobId: string, name: string) {
    return this.download(`/v1/agent/jobs/${jobId}/inputs/${encodeURIComponent(name)}`, `download input ${name} of ${jobId}`);
  }

  putOutput(jobId: string, leaseToken: string, name: string, bytes: Uint8Array<ArrayBuffer>): Promise<void> {
    return this.timed(TRANSFER_TIMEOUT_MS, undefined, async (signal) => {
      const res = await httpRequestRetryingOnce(`${this.server}/v1/agent/jobs/${jobId}/outputs/${encodeURIComponent(name)}`, {
        method: "PUT",
        body: bytes,
        signal,
        headers: { ...this.authHeaders(), "content-type": "application/octet-stream", "x-lease-token": leaseToken },
      }, true);
      if (!res.ok) throw this.failure(res, `upload output ${name} of ${jobId}`);
    });
  }

  private download(path: string, what: string): Promise<Uint8Array<ArrayBuffer>> {
    return this.timed(TRANSFER_TIMEOUT_MS, undefined, async (signal) => {
      const res = await httpRequest(this.server + path, { signal, headers: this.authHeaders() });
      if (!res.ok) throw this.failure(res, what);
      return res.bytes();
    });
  }
}
