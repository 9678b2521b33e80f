/**
 * The heartbeat: every interval, the device's health, the leases it holds and the agent's recent
 * log lines go to the control plane; the answer names jobs to stop and the deployments' version.
 */
import type { LeaseRef } from "../protocol/agent.js";
import type { ServiceActual } from "../protocol/service.js";
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

  /** A failed beat is only logged: the next one carries the same news (and the log lines not yet shipped). */
  private async beat() {
    const p = this.parts;
    if (this.beating) return;
    this.beating = true;
    try {
      const health = await p.health.sample(p.jobsRunning());
      const logs = p.shippedLog.toShip();
      const services = p.services();
      const answer = await p.uplink.heartbeat({ health, runningJobs: p.heldLeases(), logs, services });
      p.servicesShipped(services);
      p.deploymentsVersion(answer.deployments);
      p.servicesVersion(answer.services);
      p.shippedLog.shipped(logs.length);
      p.stopJobs(answer.cancel);
    } catch (e) {
      p.log("warn", "heartbeat failed", { error: String(e) });
    } finally {
      this.beating = false;
    }
  }
}
