/**
 * The agent's side of the conversation, whichever transport carries it: the WebSocket
 * upgrade and its messages, long polls, heartbeats (health, its own log lines, and which
 * of the jobs it runs it should stop), and output lines of running jobs. Every request
 * is from the agent holding the device's credential (checked before these are called,
 * or here for the socket).
 */
import type { AgentLink } from "./agent-link.js";
import type { AgentLogs } from "./agent-logs.js";
import type { DeviceJobs } from "./device-jobs.js";
import type { DevicePresence } from "./device-presence.js";
import type { Disposition, JobLifecycle } from "./job-lifecycle.js";
import type { ResultWaiters } from "./result-waiters.js";
import type { JobOutput } from "./job-output.js";
import type { JobStore } from "./job-store.js";
import type { AgentEpochs } from "./agent-epochs.js";
import type { DeviceCommands } from "./device-commands.js";
import type { Clock } from "../core/clock.js";
import type { DeviceServices } from "./device-services.js";
import { AgentMessage, EPOCH_HEADER, Epoch, type AgentSessionOpened, type Delivery, type Heartbeat, type LeaseRef, type LogBatch, type ResultReport } from "../protocol/agent.js";
import { makeProblem } from "../protocol/problem.js";

/** The Worker forwards the agent's WebSocket upgrade with the credential's secret in this header. */
export const DEVICE_SECRET_HEADER = "x-wasmvisor-device-secret";

export interface AgentSessionParts {
  presence: DevicePresence;
  link: AgentLink;
  jobs: DeviceJobs;
  lifecycle: JobLifecycle;
  store: JobStore;
  output: JobOutput;
  agentLogs: AgentLogs;
  epochs: AgentEpochs;
  commands: DeviceCommands;
  transaction: (fn: () => void) => void;
  clock: Clock;
  /** the desired-deployments version agents compare with what they applied */
  desiredVersion: () => number;
  /** the device's services: their actual status comes with heartbeats */
  services: DeviceServices;
  /** who waits for which job (an early answer goes to them before the write) */
  waiters: ResultWaiters;
  /** resolves once every write so far is durable (storage.sync) */
  durable: () => Promise<void>;
  /** told of jobs a heartbeat's answer tells the agent to stop (the audit) */
  stopped?: (jobIds: string[]) => void;
  /**
   * Resolves once answers already given have left the object: the next turn of its event loop
   * (a timer), by which the runtime has passed them through the output gate while it was open.
   */
  afterAnswers: () => Promise<void>;
}

export type HeartbeatAck = { serverTime: number; cancel: string[]; deployments: number | undefined; services: number | undefined };

export class AgentSession {
  constructor(private readonly p: AgentSessionParts) {}

  /**
   * A new agent session: the next epoch, in charge from now on. Every older session is fenced (its
   * sockets told and closed, its polls answered, its requests refused from now on), and the jobs leased
   * to it go back to the queue at once: no result of theirs can be heard any more, so waiting for their
   * leases to run out would only delay them.
   */
  async open(): Promise<AgentSessionOpened> {
    const now = this.p.clock.now();
    let opened = { epoch: 0, previous: 0 };
    this.p.transaction(() => {
      opened = this.p.epochs.open(now);
      this.p.lifecycle.expireLeases(this.p.store.leasesExpiredBy(Number.MAX_SAFE_INTEGER), now);
    });
    this.p.link.fenceOlderThan(opened.epoch);
    this.p.presence.markSeen(now);
    await this.p.durable();
    this.p.jobs.dispatch();
    return { ...opened, serverTime: now };
  }

  /** Whether a request of session `epoch` is heard (false: a newer session took over; it was counted). */
  heard(epoch: number): { ok: true } | { ok: false; current: number } {
    return this.p.epochs.check(epoch, this.p.clock.now());
  }

  async heartbeat(hb: Heartbeat): Promise<HeartbeatAck> {
    const now = this.p.clock.now();
    this.p.presence.recordHealth(hb.health, now);
    this.p.agentLogs.keep(hb.logs);
    this.p.services.report(hb.services, now);
    this.p.presence.markSeen(now);
    await this.p.presence.publishOrRetryLater();
    const cancel = this.leasesNoLongerHeld(hb.runningJobs);
    if (cancel.length > 0) this.p.stopped?.(cancel);
    return { serverTime: now, cancel, deployments: this.p.desiredVersion(), services: this.p.services.version };
  }

  /**
   * Jobs the agent runs that have ended here (canceled, failed, gone): it should stop them. A job whose
   * lease merely expired is not among them: it comes back to this same device, whose agent then takes
   * the new lease for the run it already has (stopping it would run a healthy job twice).
   */
  private leasesNoLongerHeld(running: LeaseRef[]): string[] {
    return running.filter((ref) => this.p.store.hasEnded(ref.jobId)).map((ref) => ref.jobId);
  }

  async poll(waitMs: number, max: number): Promise<Delivery> {
    this.p.presence.markSeen(this.p.clock.now());
    const jobs = await this.p.link.poll(waitMs, max, (n) => this.p.jobs.leaseReady(n));
    // Jobs handed over are a bounded command like a push (the agent acks it, or discards it as expired).
    const cmd = jobs.length > 0 ? this.p.commands.issue("jobs", jobs.map((j) => j.jobId).join(",").slice(0, 2000)) : undefined;
    return { jobs, serverTime: this.p.clock.now(), deployments: this.p.desiredVersion(), services: this.p.services.version, ...(cmd ? { cmd } : {}) };
  }

  /**
   * Applies the agent's results. Answer before the commit, acknowledge after it (docs/design.md,
   * "Results: answer before the commit"): when someone waits for one of these jobs, the waiters are
   * answered first from the row as the write will leave it, the answers leave the object while its
   * output gate is open (the next turn), and only then are the rows written; the caller acknowledges
   * the agent once they are durable (`durable`). Any event in between that touches jobs writes them
   * first (JobLifecycle.writeAnswered), so the write is exactly what the caller saw. A crash before
   * the commit loses nothing: the agent keeps the result in its outbox and sends it again under the
   * same lease, and the resend ends the job with that same result.
   */
  async settle(reports: ResultReport[]): Promise<{ jobId: string; disposition: Disposition }[]> {
    const { lifecycle } = this.p;
    if (!reports.some((r) => this.p.waiters.has(r.jobId))) return lifecycle.settle(reports);
    const entry = lifecycle.answerEarly(reports);
    await this.p.afterAnswers();
    lifecycle.writeAnswered();
    return entry.dispositions!;
  }

  /** Lines of a running job, from the agent holding its lease; anything else is ignored. */
  acceptLogs(batch: LogBatch): number {
    if (!this.p.store.holdsLease(batch.jobId, batch.leaseToken)) return 0;
    return this.p.output.append(batch.jobId, batch.lines);
  }

  /** The push transport: one WebSocket to the agent (a new one replaces any older). */
  async upgrade(request: Request): Promise<Response> {
    const secret = request.headers.get(DEVICE_SECRET_HEADER);
    if (!secret || !(await this.p.presence.authenticate(secret))) return new Response("bad device credential", { status: 401 });
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return new Response("expected a WebSocket upgrade", { status: 426 });
    const epoch = Epoch.safeParse(request.headers.get(EPOCH_HEADER) ?? 0);
    if (!epoch.success) return problemResponse(makeProblem("validation", `${EPOCH_HEADER} must be a whole number`));
    const heard = this.heard(epoch.data);
    if (!heard.ok) return problemResponse(makeProblem("fenced", fencedDetail(epoch.data, heard.current)));
    const client = this.p.link.accept(epoch.data);
    this.p.presence.markSeen(this.p.clock.now());
    return new Response(null, { status: 101, webSocket: client });
  }

  async message(ws: WebSocket, raw: string | ArrayBuffer) {
    const { link, lifecycle } = this.p;
    // A socket of a session that was taken over: nothing it says is heard (a close may still be on its way).
    const heard = this.heard(link.epochOf(ws));
    if (!heard.ok) return link.fence(ws, heard.current);
    let msg: AgentMessage;
    try {
      msg = AgentMessage.parse(JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw)));
    } catch (e) {
      link.send(ws, { t: "error", message: `message refused: ${e instanceof Error ? e.message : String(e)}`.slice(0, 2000) });
      return;
    }
    switch (msg.t) {
      case "credit":
        link.setCredit(ws, msg.free);
        break;
      case "started": {
        const started = lifecycle.ack(msg.started);
        const held = lifecycle.renew(msg.held);
        // With an id the agent waits for this answer, and sends again until it comes: only once it is durable.
        if (msg.id !== undefined) {
          await this.p.durable();
          link.send(ws, { t: "acked", id: msg.id, started, held });
        }
        return;
      }
      case "results": {
        // The agent drops a result from its outbox when it reads "reported": that must come after the
        // write is durable, or a crash in between loses the result and the job runs again.
        const dispositions = await this.settle(msg.results);
        await this.p.durable();
        link.send(ws, { t: "reported", id: msg.id, dispositions });
        link.setCredit(ws, msg.free);
        break;
      }
      case "logs":
        this.acceptLogs(msg);
        return;
      case "command-acks": {
        const recorded = this.p.commands.answer(msg.acks);
        if (msg.id === undefined) return; // an agent that does not resend
        // Confirmed only once stored: the agent drops its copy when it reads this.
        await this.p.durable();
        link.send(ws, { t: "command-acks-recorded", id: msg.id, recorded });
        return;
      }
      case "heartbeat": {
        const { cancel, deployments, services } = await this.heartbeat({ health: msg.health, runningJobs: msg.runningJobs, logs: msg.logs, services: msg.services });
        link.send(ws, { t: "heartbeat-ack", id: msg.id, cancel, deployments, services });
        return;
      }
    }
    this.p.jobs.dispatch();
  }
}

export const fencedDetail = (epoch: number, current: number) =>
  `agent session ${epoch} was taken over by session ${current}: another agent process holds this device's credential; this one must stop`;

const problemResponse = (p: ReturnType<typeof makeProblem>) =>
  new Response(JSON.stringify(p), { status: p.status, headers: { "content-type": "application/problem+json" } });
