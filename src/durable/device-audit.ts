/**
 * The commands this device's object sends its agent (stop these jobs, new desired
 * deployments), appended to the device's namespace's audit log (audit-object.ts). Records
 * are batched for FLUSH_MS and sent with waitUntil, so a command never waits for its
 * record; an append that fails is retried once, then logged and dropped (the command itself
 * was sent either way). Job deliveries (leases) are not recorded: the job's own submission is.
 */
import type { Sql } from "./sql-object.js";
import type { Clock } from "../core/clock.js";
import type { AuditRecord } from "../protocol/audit.js";
import type { ServerMessage } from "../protocol/agent.js";
import { parseTraceparent } from "../core/trace.js";

const FLUSH_MS = 50;

export class DeviceAudit {
  private buffer: AuditRecord[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly sql: Sql,
    private readonly clock: Clock,
    /** the device's id and namespace (null: not registered) */
    private readonly device: () => { id: string; namespace: string } | null,
    private readonly append: (namespace: string, records: AuditRecord[]) => Promise<void>,
    private readonly waitUntil: (p: Promise<unknown>) => void,
  ) {}

  /** A message just sent to the agent: the commands among them are recorded. */
  sent(msg: ServerMessage) {
    if (msg.t === "cancel") for (const jobId of msg.jobIds) this.record("cancel", jobId);
    else if (msg.t === "deployments") this.record("deployments", this.device()?.id ?? "", null, `version ${msg.version}`);
  }

  /** Jobs the agent was told to stop in a heartbeat's answer (they ended here). */
  stopped(jobIds: string[]) {
    for (const jobId of jobIds) this.record("stop", jobId);
  }

  private record(command: string, target: string, traceparent?: string | null, path: string | null = null) {
    const d = this.device();
    if (!d) return;
    const tp = traceparent === undefined ? this.sql.one<{ traceparent: string | null }>("SELECT traceparent FROM jobs WHERE id = ?", target)?.traceparent ?? null : traceparent;
    this.buffer.push({
      at: this.clock.now(), namespace: d.namespace, kind: "command", actor: d.id, role: "control-plane", operation: `command.${command}`,
      target, method: null, path, outcome: 0, traceId: parseTraceparent(tp)?.traceId ?? null, requestId: null,
    });
    if (this.timer) return;
    let done!: () => void;
    this.waitUntil(new Promise<void>((r) => (done = r)));
    this.timer = setTimeout(() => void this.flush().finally(done), FLUSH_MS);
  }

  private async flush() {
    this.timer = null;
    const records = this.buffer;
    this.buffer = [];
    const ns = records[0]?.namespace;
    if (!ns) return;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        return await this.append(ns, records);
      } catch (e) {
        if (attempt === 1) console.warn(JSON.stringify({ level: "warn", msg: "audit records of device commands were dropped", device: this.device()?.id, count: records.length, error: String(e) }));
      }
    }
  }
}
