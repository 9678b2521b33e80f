/**
 * Offline policies of jobs (Nomad's disconnect block: lost_after, replace): a job submitted
 * with `failover: { onOffline: expire | move, afterMs }` is ended EXPIRED (kind
 * device-offline) once its device has sent nothing for afterMs; with `move`, a copy is then
 * submitted to another device its selector picks. The old job ends first, in one
 * transaction with its lease: a late result from the old device finds it ended and changes
 * nothing (duplicate / stale), so the work has one outcome, the new job's. The move is
 * keyed (Idempotency-Key failover:<job>) so a retry after a crash names the same new job.
 */
import type { Sql } from "./sql-object.js";
import type { Clock } from "../core/clock.js";
import type { JobLifecycle } from "./job-lifecycle.js";
import type { DevicePresence } from "./device-presence.js";
import { isTerminal, type JobState, type JobSubmission, type JobView, type OfflinePolicy } from "../protocol/job.js";
import { MAX_REASONS_SHOWN, type Selector } from "../protocol/selector.js";
import { explainMisses } from "../core/selector.js";
import { iso } from "../core/time.js";
import { sha256Hex } from "../core/crypto.js";
import type { Env } from "../platform/env.js";
import { deviceStub } from "../platform/stubs.js";
import { placeBySelector } from "./fleet.js";

export const FAILOVER_TABLE = `
CREATE TABLE job_failover (
  job_id     TEXT PRIMARY KEY,
  policy     TEXT NOT NULL,
  spec       TEXT NOT NULL,
  requires   TEXT NOT NULL,
  fired_at   INTEGER,
  moved_to   TEXT,
  note       TEXT,
  next_try   INTEGER
);`;

export type StoredPolicy = OfflinePolicy & { selector: Selector | null };
type Row = { job_id: string; policy: string; spec: string; requires: string; fired_at: number | null; moved_to: string | null; note: string | null; next_try: number | null };

/** A move that found no device is tried again this often. */
const MOVE_RETRY_MS = 5_000;

export class JobFailover {
  constructor(
    private readonly sql: Sql,
    private readonly clock: Clock,
    private readonly env: Env,
    private readonly presence: DevicePresence,
    private readonly lifecycle: JobLifecycle,
    private readonly transaction: (fn: () => void) => void,
    private readonly state: (jobId: string) => JobState | undefined,
  ) {}

  record(jobId: string, policy: StoredPolicy, spec: JobSubmission, requires: string[]) {
    this.sql.run`INSERT OR IGNORE INTO job_failover (job_id, policy, spec, requires) VALUES (${jobId}, ${JSON.stringify(policy)}, ${JSON.stringify(spec)}, ${JSON.stringify(requires)})`;
  }

  /** The silence the policy counts from: the last heartbeat, or the registration if none came. */
  private silentSince(): number {
    const d = this.presence.device!;
    return d.last_seen ?? d.registered_at;
  }

  private open(): Row[] {
    return this.sql.all<Row>("SELECT * FROM job_failover WHERE fired_at IS NULL OR (moved_to IS NULL AND next_try IS NOT NULL) LIMIT 500");
  }

  /** When the alarm must look: the earliest policy deadline of a job not ended, or a move to retry. */
  dueAt(): number | null {
    if (!this.presence.device) return null;
    let at: number | null = null;
    for (const r of this.open()) {
      const t = r.fired_at === null ? this.silentSince() + (JSON.parse(r.policy) as StoredPolicy).afterMs : r.next_try!;
      at = at === null ? t : Math.min(at, t);
    }
    return at;
  }

  /** From the alarm: fires every policy whose device silence passed afterMs; retries moves that found no device. */
  async run(now: number) {
    const d = this.presence.device;
    if (!d) return;
    const silent = now - this.silentSince();
    for (const r of this.open()) {
      const policy = JSON.parse(r.policy) as StoredPolicy;
      if (r.fired_at === null) {
        const s = this.state(r.job_id);
        if (!s || isTerminal(s)) {
          this.sql.run("DELETE FROM job_failover WHERE job_id = ?", r.job_id);
          continue;
        }
        if (silent < policy.afterMs) continue;
        this.transaction(() => {
          this.lifecycle.lose(r.job_id, `device ${d.id} sent no heartbeat for ${silent} ms (policy: ${policy.onOffline} after ${policy.afterMs} ms)`, now);
          this.sql.run`UPDATE job_failover SET fired_at = ${now}, note = ${policy.onOffline === "expire" ? "expired" : "moving"}, next_try = ${policy.onOffline === "move" ? now : null} WHERE job_id = ${r.job_id}`;
        });
        console.log(JSON.stringify({ level: "info", msg: "job failover fired", deviceId: d.id, jobId: r.job_id, policy: policy.onOffline, silentMs: silent }));
        if (policy.onOffline === "move") await this.move(r.job_id, policy, r, now);
      } else if (r.next_try !== null && r.next_try <= now) {
        await this.move(r.job_id, policy, r, now);
      }
    }
  }

  private async move(jobId: string, policy: StoredPolicy, r: Row, now: number) {
    const d = this.presence.device!;
    const spec = JSON.parse(r.spec) as JobSubmission;
    const requires = JSON.parse(r.requires) as string[];
    let note: string;
    let movedTo: string | null = null;
    try {
      const placed = await placeBySelector(this.env, d.namespace, policy.selector!, requires, [d.id], policy.afterMs);
      if (!placed.ok) {
        note = `no other device matches yet: ${explainMisses(placed.misses, MAX_REASONS_SHOWN)}`.slice(0, 2000);
      } else {
        const moved = { ...spec, device: placed.device };
        const key = { key: `failover:${jobId}`, bodyHash: await sha256Hex(`failover:${jobId}`) };
        const out = await deviceStub(this.env, placed.device).submit(d.namespace, moved, 0, key, requires, JSON.stringify(policy));
        if (out.ok) {
          movedTo = out.value.job.id;
          note = `moved to ${placed.device}`;
        } else note = `moving to ${placed.device} failed: ${out.detail}`;
      }
    } catch (e) {
      note = `moving failed: ${String(e)}`;
    }
    this.sql.run`UPDATE job_failover SET moved_to = ${movedTo}, note = ${note}, next_try = ${movedTo ? null : now + MOVE_RETRY_MS} WHERE job_id = ${jobId}`;
  }

  /** What the job view shows of the policy. */
  view(jobId: string): JobView["failover"] | undefined {
    const r = this.sql.one<Row>("SELECT * FROM job_failover WHERE job_id = ?", jobId);
    if (!r) return undefined;
    const p = JSON.parse(r.policy) as StoredPolicy;
    return { onOffline: p.onOffline as "expire" | "move", afterMs: p.afterMs, firedAt: iso(r.fired_at), movedTo: r.moved_to, note: r.note };
  }
}
