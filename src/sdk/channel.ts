/**
 * The streaming submission channel (docs/protocol.md, "Submission channel"): one WebSocket
 * that carries many submissions and their answers, for callers that submit many jobs.
 *
 *   const ch = await client.channel();
 *   const { done, job } = await ch.submit({ device, module, function: "fibo", args: [20] });
 *   ch.close();
 *
 * Every submission gets an Idempotency-Key (random unless given), so one that was in flight
 * when the connection dropped can be sent again, on a new channel or over REST, and answers
 * the same job. The server's in-flight limit is respected here: submissions beyond it wait
 * in this process until an answer frees a slot (back-pressure, not refusals).
 */
import type WebSocket from "ws";
import type { JobSubmissionInput, JobView, Problem } from "../protocol/index.js";
import type { ChannelServerMessage } from "../protocol/channel.js";

export interface ChannelAnswer {
  /** the job ended within the wait (status 200); false: still queued or running (202) */
  done: boolean;
  job: JobView;
  /** an earlier submission with the same idempotency key created this job */
  replayed: boolean;
}

export interface ChannelSubmitOptions {
  /** seconds to wait for the job to end before the answer comes (default 60, the most) */
  waitSeconds?: number;
  idempotencyKey?: string;
}

/** A refused submission or channel, with the RFC 9457 problem the server sent. */
export class ChannelError extends Error {
  constructor(readonly status: number, readonly problem: Partial<Problem>) {
    super(`${status} ${problem.title ?? ""}${problem.detail ? `: ${problem.detail}` : ""}`);
    this.name = "ChannelError";
  }
}

type Pending = { resolve: (a: ChannelAnswer) => void; reject: (e: Error) => void };

export class JobChannel {
  private readonly pending = new Map<string, Pending>();
  private readonly waiting: (() => void)[] = [];
  private nextRef = 1;
  private maxInFlight = 1;
  private closedWith: Error | null = null;

  private constructor(private readonly ws: WebSocket) {}

  /** Opens a channel; resolves once the server said it is ready, rejects with the server's problem if the upgrade is refused. */
  static async open(server: string, token: string): Promise<JobChannel> {
    // Loaded when a channel is opened: the rest of the SDK (and the CLI on it) does not need it.
    const { default: WebSocketClient } = await import("ws");
    const ws = new WebSocketClient(`${server.replace(/^http/, "ws")}/v1/jobs/channel`, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false, handshakeTimeout: 15_000 });
    const ch = new JobChannel(ws);
    return new Promise((resolve, reject) => {
      let ready = false;
      ws.on("unexpected-response", (_req, res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => {
          let problem: Partial<Problem> = {};
          try {
            problem = JSON.parse(text) as Problem;
          } catch {
            // not problem+json: the status says enough
          }
          reject(new ChannelError(res.statusCode ?? 0, problem));
        });
      });
      ws.on("message", (data) => {
        const m = JSON.parse(String(data)) as ChannelServerMessage;
        if (m.type === "ready") {
          ch.maxInFlight = m.maxInFlight;
          ready = true;
          resolve(ch);
        } else ch.answer(m);
      });
      ws.on("error", (e) => {
        if (!ready) reject(e);
      });
      ws.on("close", (code, reason) => {
        const err = new Error(`the channel closed (${code}${reason.length ? ` ${reason.toString()}` : ""}); resubmit with the same idempotency key to learn what became of a job`);
        ch.closedWith = err;
        for (const p of ch.pending.values()) p.reject(err);
        ch.pending.clear();
        for (const w of ch.waiting.splice(0)) w();
        if (!ready) reject(err);
      });
    });
  }

  /** Submissions sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Submits one job as `POST /v1/jobs?wait=` would; resolves with its answer, rejects with a ChannelError when it is refused. */
  async submit(job: JobSubmissionInput | Record<string, unknown>, opts: ChannelSubmitOptions = {}): Promise<ChannelAnswer> {
    while (!this.closedWith && this.pending.size >= this.maxInFlight) await new Promise<void>((r) => this.waiting.push(r));
    if (this.closedWith) throw this.closedWith;
    const ref = String(this.nextRef++);
    const answer = new Promise<ChannelAnswer>((resolve, reject) => this.pending.set(ref, { resolve, reject }));
    this.ws.send(JSON.stringify({ type: "submit", ref, job, wait: opts.waitSeconds ?? 60, idempotencyKey: opts.idempotencyKey ?? crypto.randomUUID() }));
    return answer;
  }

  close(): void {
    this.ws.close(1000);
  }

  private answer(m: Exclude<ChannelServerMessage, { type: "ready" }>) {
    const p = m.ref === null ? undefined : this.pending.get(m.ref);
    if (!p) return; // a message the channel could not read: nothing of ours waits for it
    this.pending.delete(m.ref!);
    this.waiting.shift()?.();
    if (m.type === "result") p.resolve({ done: m.status === 200, job: m.job as unknown as JobView, replayed: m.replayed });
    else p.reject(new ChannelError(m.status, m.problem));
  }
}
