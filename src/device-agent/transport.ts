/**
 * How jobs reach the agent: WebSocket push, or long-poll where WebSockets do not get through
 * ("auto"), with reconnects and backoff. Only an HTTP answer without the upgrade counts as a
 * block; a control plane that is down is waited for on the WebSocket, so push resumes with it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { FENCED_CLOSE_CODE, type CommandRef, type LeasedJob } from "../protocol/agent.js";
import { ApiError, type ControlPlaneClient } from "./api-client.js";
import { SocketLink, UpgradeRefused } from "./socket-link.js";
import { agentBackoffMs } from "./agent-backoff.js";
import type { AgentLog } from "./agent-log.js";

export type TransportMode = "auto" | "ws" | "poll";

export interface TransportOptions {
  server: string;
  /** "auto": WebSocket push, falling back to long-poll when WebSockets are blocked */
  transport: TransportMode;
  pollWaitSeconds: number;
}

/** What the transport hands over, and what it needs to know, from the rest of the agent. */
export interface TransportEvents {
  /** `cmd`: the bounded command (id, expiry) the jobs came as */
  jobs(jobs: LeasedJob[], cmd?: CommandRef): void;
  cancel(jobIds: string[], cmd?: CommandRef): void;
  /** the desired deployments' version (a poll says it with every delivery, push when it changes) */
  deployments(version: number | undefined, cmd?: CommandRef): void;
  /** the desired services' version (as for deployments; a hint: heartbeats answer it too) */
  services(version: number | undefined): void;
  /** a generic bounded command (services, rollouts) */
  command(kind: string, body: unknown, cmd: CommandRef): void;
  /** the control plane's clock, as a poll answer said it */
  serverTime(ms: number): void;
  /** a push link opened: what waited for one (results, lease renewals) can go now */
  connected(): void;
  /** the control plane refused this device's credential: the agent cannot go on */
  credentialRefused(): void;
  /** a newer agent session took this device over (fencing): this process must stop, not reconnect */
  fenced(detail: string): void;
  /** how many more jobs the agent takes now */
  capacity(): number;
  /** what the transport learned of the link: the control plane answered (true) or could not be reached */
  reachable(yes: boolean, reason?: string): void;
}

/** After falling back to long-poll, try the WebSocket again this much later. */
const WS_RETRY_AFTER_MS = 60_000;
/** While the control plane cannot be reached, the WebSocket is retried at least this often. */
const WS_RECONNECT_MAX_MS = 5_000;

type SocketOutcome = "opened" | "refused" | "unreachable";

export class Transport {
  private link: SocketLink | null = null;
  private credential = "";
  private stopping = false;
  private readonly pollAbort = new AbortController();
  private slotWaiters: (() => void)[] = [];
  private loop: Promise<void> | null = null;

  constructor(
    private readonly opts: TransportOptions,
    private readonly client: ControlPlaneClient,
    private readonly events: TransportEvents,
    private readonly log: AgentLog,
  ) {}

  /** The push link, while one is open. */
  get openLink(): SocketLink | null {
    return this.link?.isOpen ? this.link : null;
  }

  /** Connects with the device's credential (at once ended, if stop() came first). */
  start(credential: string) {
    this.credential = credential;
    this.loop = this.keepConnected();
  }

  /** Ends the link or poll under way (synchronously: nothing new is taken from here on). */
  stop() {
    this.stopping = true;
    this.pollAbort.abort();
    this.link?.close();
  }

  /** Resolves when the transport loop has ended after stop(). */
  finished(): Promise<void> {
    return this.loop?.catch(() => undefined) ?? Promise.resolve();
  }

  /** A job ended: a long poll waiting for room to take more may go on. */
  slotFreed() {
    for (const wake of this.slotWaiters.splice(0)) wake();
  }

  /** WebSocket push first; in "auto" mode, long-poll while WebSockets do not get through. */
  private async keepConnected() {
    let failures = 0;
    let refusals = 0;
    while (!this.stopping) {
      if (this.opts.transport === "poll") {
        await this.pollLoop(Number.POSITIVE_INFINITY);
        continue;
      }
      const outcome = await this.runSocket();
      if (this.stopping) break;
      if (outcome === "opened") {
        failures = refusals = 0;
        await sleep(100 + Math.random() * 200);
        continue;
      }
      failures++;
      // Only an answer without the upgrade says WebSockets are blocked; a control plane that is down
      // (refused, reset, timed out) is waited for on the WebSocket, so push resumes as soon as it is back.
      if (outcome === "refused") refusals++;
      if (this.opts.transport === "ws" || refusals < 2) {
        await sleep(outcome === "refused" ? agentBackoffMs(failures) : Math.min(WS_RECONNECT_MAX_MS, agentBackoffMs(failures)));
        continue;
      }
      this.log("warn", "WebSocket transport unavailable; using long-poll", { retryWebSocketInMs: WS_RETRY_AFTER_MS });
      await this.pollLoop(Date.now() + WS_RETRY_AFTER_MS);
      failures = refusals = 0;
    }
  }

  /**
   * Why a WebSocket did not open: refused (an HTTP answer without the upgrade, or no way through while
   * plain HTTPS gets an answer) or unreachable (the control plane is down, or the network is).
   */
  private async whyNotOpened(e: unknown): Promise<"refused" | "unreachable"> {
    if (e instanceof UpgradeRefused) {
      // A 5xx (a proxy whose upstream is down), 408 or 429 is trouble on the server's side, not a block.
      return e.status >= 500 || e.status === 408 || e.status === 429 ? "unreachable" : "refused";
    }
    const httpAnswers = await this.client.info().then(
      () => true,
      (err) => err instanceof ApiError && err.status < 500,
    );
    return httpAnswers ? "refused" : "unreachable";
  }

  /** Runs one WebSocket session; resolves when it ends, saying whether it ever opened, and if not, why. */
  private runSocket(): Promise<SocketOutcome> {
    return new Promise((resolve) => {
      SocketLink.open(
        this.opts.server,
        this.credential,
        {
          jobs: (jobs, cmd) => this.events.jobs(jobs, cmd),
          cancel: (jobIds, cmd) => this.events.cancel(jobIds, cmd),
          deployments: (version, cmd) => this.events.deployments(version, cmd),
          services: (version) => this.events.services(version),
          command: (kind, body, cmd) => this.events.command(kind, body, cmd),
          problem: (message) => this.log("warn", "the control plane refused a message", { message }),
          fenced: (message) => this.events.fenced(message),
        },
        (code, reason) => {
          this.link = null;
          if (code === FENCED_CLOSE_CODE) this.events.fenced(reason);
          else if (!this.stopping) this.log("warn", "push transport closed; reconnecting", { code, reason });
          resolve("opened");
        },
        this.client.epoch,
      ).then(
        (link) => {
          if (this.stopping) {
            link.close(); // opened after stop() began: its close event ends this session
            return;
          }
          this.link = link;
          this.log("info", "push transport connected");
          this.events.reachable(true);
          link.send({ t: "credit", free: this.events.capacity() });
          this.events.connected();
        },
        (e) => {
          if (e instanceof UpgradeRefused && e.status === 409) this.events.fenced("the WebSocket upgrade was refused: a newer agent session took this device over");
          if (this.stopping) return resolve("unreachable");
          void this.whyNotOpened(e).then((why) => {
            this.log("warn", "WebSocket connection failed", { error: String(e), ...(why === "unreachable" ? { controlPlane: "unreachable" } : { upgrade: "refused" }) });
            if (why === "unreachable") this.events.reachable(false, String(e));
            resolve(why);
          });
        },
      );
    });
  }

  private async pollLoop(until: number) {
    let failures = 0;
    while (!this.stopping && Date.now() < until) {
      const free = this.events.capacity();
      if (free <= 0) {
        await new Promise<void>((r) => this.slotWaiters.push(r));
        continue;
      }
      try {
        const wait = Math.max(0, Math.min(this.opts.pollWaitSeconds, Math.ceil((until - Date.now()) / 1000)));
        const delivery = await this.client.poll(wait, free, this.pollAbort.signal);
        failures = 0;
        this.events.reachable(true);
        this.events.serverTime(delivery.serverTime);
        this.events.deployments(delivery.deployments);
        this.events.services(delivery.services);
        if (delivery.jobs.length > 0) this.events.jobs(delivery.jobs, delivery.cmd);
      } catch (e) {
        if (this.stopping) break;
        if (e instanceof ApiError && e.fenced) break; // the agent was told (api-client's onFenced) and stops
        if (e instanceof ApiError && e.status === 401) {
          this.log("error", "the control plane refused this device's credential; re-register with a new data dir", { error: String(e) });
          this.events.credentialRefused();
          break;
        }
        failures++;
        if (!(e instanceof ApiError) || e.status >= 500) this.events.reachable(false, String(e));
        const delay = agentBackoffMs(failures);
        this.log("warn", "poll failed; retrying", { error: String(e), retryInMs: Math.round(delay) });
        await sleep(delay);
      }
    }
  }
}
