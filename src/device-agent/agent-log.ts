/**
 * The agent's own log: structured JSON lines on stdout, filtered by level, and a ring of the
 * recent lines that the heartbeat ships to the control plane (shown as the device's agent logs).
 */
import { MAX_SHIPPED_AGENT_LINES, type AgentLogLine } from "../protocol/agent.js";

export type Level = "debug" | "info" | "warn" | "error";
export type AgentLog = (level: Level, msg: string, fields?: Record<string, unknown>) => void;

const RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold = RANK.info;

export function setAgentLogLevel(level: Level) {
  threshold = RANK[level];
}

const isShown = (level: Level) => RANK[level] >= threshold;

/** Writes one line to stdout (no shipping): for the command line before and after an agent runs. */
export function agentLog(level: Level, msg: string, fields: Record<string, unknown> = {}) {
  if (!isShown(level)) return;
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }) + "\n");
}

/** An agent's logger: prints each line and keeps it until a heartbeat has shipped it. */
export class ShippedLog {
  /** recent log lines not yet shipped to the control plane (runner.logs), oldest dropped first */
  private readonly unshipped: AgentLogLine[] = [];

  constructor(private readonly print: AgentLog = agentLog) {}

  readonly log: AgentLog = (level, msg, fields = {}) => {
    if (!isShown(level)) return;
    this.print(level, msg, fields);
    this.unshipped.push({ at: Date.now(), level, msg: msg.slice(0, 500), ...(Object.keys(fields).length ? { fields: JSON.stringify(fields).slice(0, 2000) } : {}) });
    if (this.unshipped.length > MAX_SHIPPED_AGENT_LINES) this.unshipped.shift();
  };

  /** The lines one heartbeat carries (the oldest first). */
  toShip(): AgentLogLine[] {
    return this.unshipped.slice(0, MAX_SHIPPED_AGENT_LINES);
  }

  /** The control plane has the `count` oldest lines: they leave the ring. */
  shipped(count: number) {
    this.unshipped.splice(0, Math.min(count, this.unshipped.length));
  }
}
