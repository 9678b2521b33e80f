/**
 * What the agent tells the control plane: lease updates, results, job output, heartbeats and credit.
 * Each goes over the WebSocket while one is open, else over HTTP; over HTTP, job output goes in
 * order and results wait for it, so no output line lands after its job ended.
 */
import type { CommandAck, Heartbeat, LogBatch, ResultReport } from "../protocol/agent.js";
import type { ControlPlaneClient } from "./api-client.js";
import type { SocketLink } from "./socket-link.js";
import type { LeaseUpdate } from "./lease-keeper.js";
import type { AgentLog } from "./agent-log.js";

/** Log lines of a running job go in requests of at most this much JSON (well under the body limit). */
const MAX_LOG_BATCH_BYTES = 64 * 1024;

export type HeartbeatAnswer = { cancel: string[]; deployments: number | undefined; services: number | undefined };

export class Uplink {
  private logsInFlight: Promise<void> = Promise.resolve();

  constructor(
    private readonly client: ControlPlaneClient,
    /** the WebSocket link, when one is open */
    private readonly openLink: () => SocketLink | null,
    /** how many more jobs the agent takes now */
    private readonly capacity: () => number,
    private readonly log: AgentLog,
  ) {}

  /** Acks and renewals. An ack over HTTP is given twice as long (a request, not a message on an open link). */
  async leases(update: LeaseUpdate, answerMs: number) {
    const link = this.openLink();
    if (link) await link.request<"started">({ t: "started", ...update }, answerMs);
    else await this.client.ack(update.started, update.held, answerMs * 2);
  }

  async results(batch: ResultReport[]) {
    const link = this.openLink();
    if (link) {
      await link.request<"results">({ t: "results", results: batch, free: this.capacity() });
      return;
    }
    await this.logsInFlight;
    await this.client.report(batch);
  }

  /** Output of a running job, as it comes; lost lines are not worth a retry (the result carries the output too). */
  jobOutput(batch: LogBatch) {
    if (batch.lines.length > 1 && JSON.stringify(batch).length > MAX_LOG_BATCH_BYTES) {
      // Long lines add up: split so that no request (or message) goes over the body limit.
      const half = Math.ceil(batch.lines.length / 2);
      this.jobOutput({ ...batch, lines: batch.lines.slice(0, half) });
      this.jobOutput({ ...batch, lines: batch.lines.slice(half) });
      return;
    }
    const link = this.openLink();
    if (link) {
      link.send({ t: "logs", ...batch });
      return;
    }
    this.logsInFlight = this.logsInFlight
      .then(() => this.client.logs(batch))
      .then(
        () => undefined,
        (e) => this.log("warn", "could not send job output", { error: String(e) }),
      );
  }

  async heartbeat(body: Heartbeat): Promise<HeartbeatAnswer> {
    const link = this.openLink();
    if (link) {
      const reply = await link.request<"heartbeat">({ t: "heartbeat", ...body });
      return reply.t === "heartbeat-ack" ? { cancel: reply.cancel, deployments: reply.deployments, services: reply.services } : { cancel: [], deployments: undefined, services: undefined };
    }
    const { cancel, deployments, services } = await this.client.heartbeat(body);
    return { cancel, deployments, services };
  }

  /** Answers to bounded commands; resolves once the control plane confirms it stored them (throws if it did not). */
  async commandAcks(acks: CommandAck[]) {
    const link = this.openLink();
    if (link) {
      const reply = await link.request<"command-acks">({ t: "command-acks", acks });
      if (reply.t !== "command-acks-recorded") throw new Error(`unexpected answer ${reply.t} to command answers`);
    } else await this.client.commandAcks(acks);
  }

  /** Freed capacity is news only to a push link (a long poll says how many jobs it takes in each request). */
  credit() {
    this.openLink()?.send({ t: "credit", free: this.capacity() });
  }
}
