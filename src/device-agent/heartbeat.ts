/**
 * The heartbeat: every interval, the device's health, the leases it holds and the agent's recent
 * log lines go to the control plane; the answer names jobs to stop and the deployments' version.
 */
import { MAX_SHIPPED_AGENT_LINES, type AgentLogLine, type LeaseRef } from "../protocol/agent.js";
import type { ServiceActual } from "../protocol/service.js";
import type { HealthSample } from "./outbox.js";
import type { DegradedState } from "./degraded.js";
import { ApiError } from "./api-client.js";
import type { HealthSampler } from "./machine.js";
import type { ShippedLog, AgentLog } from "./agent-log.js";
import type { Uplink } from "./uplink.js";

export interface HeartbeatParts {
  health: HealthSampler;
  uplink: Uplink;
  shippedLog: ShippedLog;
  /** jobs running in threads now */
  jobsRunning: () => number;
  /** the leases held (running or waiting for a thread) */
  heldLeases: () => LeaseRef[];
  /** the control plane no longer leases these jobs to this device */
  stopJobs: (jobIds: string[]) => void;
  /** the desired deployments' version, when the control plane said it */
  deploymentsVersion: (version: number | undefined) => void;
  /** each service's actual status (with output lines not yet shipped), and that they were shipped */
  services: () => ServiceActual[];
  servicesShipped: (sent: ServiceActual[]) => void;
  /** the desired services' version, when the control plane said it */
  servicesVersion: (version: number | undefined) => void;
  /** where health samples and log lines wait while the control plane cannot be reached (the outbox) */
  store: {
    keepWhileAway(sample: HealthSample, logs: AgentLogLine[]): void;
    backlog(max: number): AgentLogLine[];
    backlogShipped(count: number): void;
  };
  /** degraded mode: its state for the health sample, and what each beat learned of the link */
  degraded: { readonly state: DegradedState | undefined; unreachable(reason: string): void; reachable(): void };
  log: AgentLog;
}

export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  /** a beat is on its way: the next waits for its answer (services' output lines are shipped once) */
  private beating = false;

  constructor(private readonly parts: HeartbeatParts) {}

  /** One beat now (awaited), then one every `intervalMs`. */
  async start(intervalMs: number) {
    await this.beat();
    this.timer = setInterval(() => void this.beat(), intervalMs);
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * One beat: the health sample (saying whether the agent is degraded), the log lines kept from an
   * outage first, then the recent ones. A beat that cannot be sent keeps its sample and lines in the
   * outbox (store and forward): the beats after the outage deliver them, oldest first.
   */
  private async beat() {
    const p = this.parts;
    if (this.beating) return;
    this.beating = true;
    let sample: HealthSample | null = null;
    let backlog: AgentLogLine[] = [];
    let logs: AgentLogLine[] = [];
    try {
      const degraded = p.degraded.state;
      sample = { at: Date.now(), health: { ...(await p.health.sample(p.jobsRunning())), ...(degraded ? { degraded } : {}) } };
      backlog = p.store.backlog(MAX_SHIPPED_AGENT_LINES);
      logs = p.shippedLog.toShip().slice(0, MAX_SHIPPED_AGENT_LINES - backlog.length);
      const services = p.services();
      const answer = await p.uplink.heartbeat({ health: sample.health, runningJobs: p.heldLeases(), logs: [...backlog, ...logs], services });
      p.degraded.reachable();
      p.store.backlogShipped(backlog.length);
      p.servicesShipped(services);
      p.servicesVersion(answer.services);
      p.shippedLog.shipped(logs.length);
      p.deploymentsVersion(answer.deployments);
      p.stopJobs(answer.cancel);
    } catch (e) {
      if (e instanceof ApiError && e.fenced) return; // the agent is stopping
      const answered = e instanceof ApiError && e.status < 500 && e.status !== 408 && e.status !== 429;
      if (!answered) p.degraded.unreachable(String(e));
      p.log("warn", "heartbeat failed", { error: String(e) });
      if (sample && !answered) {
        // The beat that found the control plane away was taken just before: it is degraded too.
        if (!sample.health.degraded && p.degraded.state) sample.health = { ...sample.health, degraded: p.degraded.state };
        p.store.keepWhileAway(sample, logs);
        p.shippedLog.shipped(logs.length);
      }
    } finally {
      this.beating = false;
    }
  }
}
