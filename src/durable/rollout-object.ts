/**
 * One object per rollout (named by namespace and id), driven by its own alarm: it sends a
 * new deployment version to its target devices wave by wave (rate-limited), holds each
 * wave's health gate (soak, then every updated device judged on apply, heartbeats and call
 * error rate), rolls every updated device back past the failure threshold, and records
 * every decision. Pure decisions live in core/rollout.ts; this stores and does the I/O.
 *
 * Each device keeps the previous version's files until the rollout commits (DevicePart.keep),
 * so a rollback re-installs from what the device already holds.
 */
import { SqlObject } from "./sql-object.js";
import { fail, ok, type Outcome } from "./rpc.js";
import { iso } from "../core/time.js";
import { mapWithConcurrency } from "../core/concurrency.js";
import { describeThreshold, judgeDevice, pastThreshold, planWaves, rateAllowance, trippedGates, type RateWindow } from "../core/rollout.js";
import type { DevicePart } from "../protocol/deployment.js";
import type { DeviceHealthSample, RolloutAction, RolloutGateName, RolloutDeviceState, RolloutGate, RolloutRollback, RolloutState, RolloutStrategy, RolloutView } from "../protocol/rollout.js";
import type { Selector } from "../protocol/selector.js";
import type { Placement } from "./deployment-object.js";
import type { Env } from "../platform/env.js";
import { deploymentStub, deviceStub, eventHubStub, registryStub } from "../platform/stubs.js";

const SCHEMA = `
CREATE TABLE rollout (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  name        TEXT NOT NULL,
  namespace   TEXT NOT NULL,
  deployment  TEXT NOT NULL,
  signed_by   TEXT,
  config      TEXT NOT NULL,
  template    TEXT NOT NULL,
  state       TEXT NOT NULL,
  rate_start  INTEGER,
  rate_count  INTEGER NOT NULL DEFAULT 0,
  rollback    TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);
CREATE TABLE waves (idx INTEGER PRIMARY KEY, size INTEGER NOT NULL, state TEXT NOT NULL, started_at INTEGER, soak_until INTEGER, gate TEXT);
CREATE TABLE targets (
  device          TEXT PRIMARY KEY,
  wave            INTEGER NOT NULL,
  ord             INTEGER NOT NULL,
  state           TEXT NOT NULL,
  prev_part       TEXT,
  prev_generation INTEGER,
  generation      INTEGER,
  started_at      INTEGER,
  reasons         TEXT NOT NULL DEFAULT '[]',
  sample          TEXT
);
CREATE INDEX targets_by_wave ON targets (wave, ord);
CREATE INDEX targets_by_state ON targets (state);
CREATE TABLE decisions (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, decision TEXT NOT NULL, detail TEXT NOT NULL);`;

export interface RolloutConfig {
  selector: Selector;
  strategy: RolloutStrategy;
  gate: RolloutGate;
  rollback: RolloutRollback;
}

type RolloutRow = {
  name: string; namespace: string; deployment: string; signed_by: string | null; config: string; template: string; state: RolloutState;
  rate_start: number | null; rate_count: number; rollback: string | null; created_at: number; updated_at: number;
  revision: number; published_revision: number; published_state: string | null;
};
type WaveRow = { idx: number; size: number; state: "waiting" | "deploying" | "soaking" | "passed" | "failed" | "skipped"; started_at: number | null; soak_until: number | null; gate: string | null };
type TargetRow = {
  device: string; wave: number; ord: number; state: RolloutDeviceState; prev_part: string | null; prev_generation: number | null;
  generation: number | null; started_at: number | null; reasons: string; sample: string | null; gates: string;
};
type RollbackReason = NonNullable<RolloutView["rollbackReason"]>;

/** Devices sent a version (or reverted) per step; between steps the alarm runs again at once. */
const STEP = 200;
const FANOUT = 32;
/** How often a gate waiting for devices still applying looks again. */
const RECHECK_MS = 5_000;

export class RolloutObject extends SqlObject<Env> {
  protected migrations() {
    return [
      SCHEMA,
      // the gate measures each failed device failed (core/rollout.ts judgeDevice), counted in a rollback's `tripped`
      "ALTER TABLE targets ADD COLUMN gates TEXT NOT NULL DEFAULT '[]'",
      // the rollout listing (RegistryObject.rollouts): state changes counted, and the last one published there
      "ALTER TABLE rollout ADD COLUMN revision INTEGER NOT NULL DEFAULT 0; ALTER TABLE rollout ADD COLUMN published_revision INTEGER NOT NULL DEFAULT -1",
      // the state the namespace's event stream last heard of (a rollout.<state> event goes out when it changes)
      "ALTER TABLE rollout ADD COLUMN published_state TEXT",
    ];
  }

  protected override schemaOnFirstWrite() {
    return true;
  }

  private row(namespace: string | null): RolloutRow | undefined {
    const r = this.hasSchema ? this.one<RolloutRow>("SELECT * FROM rollout") : undefined;
    return r && (namespace === null || r.namespace === namespace) ? r : undefined;
  }

  private decide(decision: string, detail: string) {
    this.run`INSERT INTO decisions (at, decision, detail) VALUES (${this.clock.now()}, ${decision}, ${detail})`;
  }

  private setState(state: RolloutState) {
    this.run("UPDATE rollout SET state = ?, updated_at = ?, revision = revision + 1", state, this.clock.now());
  }

  /**
   * Publishes the state to the rollout listing in the registry (which also says whether the
   * deployment has an active rollout) when it changed since the last publish. A failed publish
   * is tried again by the alarm.
   */
  private publish(): Promise<boolean> {
    // one at a time (the alarm and a request may both publish): the second sees what the first recorded
    const next = this.publishing.then(() => this.publishOnce());
    this.publishing = next.catch(() => undefined);
    return next;
  }
  private publishing: Promise<unknown> = Promise.resolve();

  private async publishOnce(): Promise<boolean> {
    const r = this.one<RolloutRow>("SELECT * FROM rollout");
    if (!r || r.published_revision >= r.revision) return true;
    try {
      const targets = this.one<{ n: number }>("SELECT COUNT(*) AS n FROM targets")!.n;
      await registryStub(this.env).settleRollout(r.namespace, r.name, r.state, r.revision, { deployment: r.deployment, targets, createdAt: r.created_at });
      if (r.state !== r.published_state) {
        // the dashboard and `wasmvisor events` hear of it (at least once: a failed append is tried again)
        const last = this.one<{ decision: string; detail: string }>("SELECT decision, detail FROM decisions ORDER BY seq DESC LIMIT 1");
        const data = JSON.stringify({ rollout: r.name, state: r.state, from: r.published_state, decision: last?.decision ?? null, detail: last?.detail ?? null });
        await eventHubStub(this.env, r.namespace).append(r.namespace, [{ kind: `rollout.${r.state.replace(/_/g, "-")}`, device: null, job: null, deployment: r.deployment, data, at: this.clock.now() }]);
      }
      this.run("UPDATE rollout SET published_revision = MAX(published_revision, ?), published_state = ?", r.revision, r.state);
      return true;
    } catch {
      if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(this.clock.now() + RECHECK_MS);
      return false;
    }
  }

  /**
   * Publishes this rollout's state again (or, when no rollout by this name exists here, that
   * it does not): the route asks this of a rollout the listing names as active, in case a
   * publish or a creation was lost.
   */
  async republish(namespace: string, name: string): Promise<RolloutState | null> {
    const r = this.row(namespace);
    if (!r) {
      await registryStub(this.env).settleRollout(namespace, name, null, 0);
      return null;
    }
    this.run("UPDATE rollout SET published_revision = -1");
    await this.publish();
    return r.state;
  }

  /** Starts a rollout: its targets (in the order given) split into waves; the alarm takes it from there. */
  async create(input: { name: string; namespace: string; deployment: string; signedBy: string | null; config: string; template: string; targets: string[] }): Promise<Outcome<RolloutView>> {
    if (this.hasSchema && this.one("SELECT 1 AS x FROM rollout")) return fail("conflict", `rollout ${input.name} exists`);
    this.ensureSchema();
    const config = JSON.parse(input.config) as RolloutConfig;
    const sizes = planWaves(input.targets.length, config.strategy);
    const now = this.clock.now();
    this.ctx.storage.transactionSync(() => {
      this.run`INSERT INTO rollout (id, name, namespace, deployment, signed_by, config, template, state, created_at, updated_at) VALUES (1, ${input.name}, ${input.namespace}, ${input.deployment}, ${input.signedBy}, ${input.config}, ${input.template}, 'running', ${now}, ${now})`;
      let at = 0;
      for (const [idx, size] of sizes.entries()) {
        this.run`INSERT INTO waves (idx, size, state) VALUES (${idx}, ${size}, 'waiting')`;
        for (let k = 0; k < size; k++, at++) this.run`INSERT INTO targets (device, wave, ord, state) VALUES (${input.targets[at]!}, ${idx}, ${at}, 'pending')`;
      }
      this.decide("created", `${input.targets.length} devices matched the selector; waves of ${sizes.join(", ")}`);
    });
    await this.ctx.storage.setAlarm(now);
    await this.publish();
    return ok(this.view()!);
  }

  async show(namespace: string | null): Promise<RolloutView | null> {
    return this.row(namespace) ? this.view() : null;
  }

  /** pause, resume, abort, rollback: each allowed from the states it makes sense in (409 otherwise). */
  async act(namespace: string | null, action: RolloutAction): Promise<Outcome<RolloutView>> {
    const r = this.row(namespace);
    if (!r) return fail("not-found", "no such rollout");
    const refuse = () => fail<RolloutView>("conflict", `cannot ${action} a rollout that is ${r.state}`);
    switch (action) {
      case "pause":
        if (r.state !== "running") return refuse();
        this.setState("paused");
        this.decide("paused", "by an operator: no device is sent the new version and no gate passes until resumed");
        break;
      case "resume":
        if (r.state !== "paused") return refuse();
        this.setState("running");
        this.decide("resumed", "by an operator");
        await this.ctx.storage.setAlarm(this.clock.now());
        break;
      case "abort":
        if (r.state !== "running" && r.state !== "paused") return refuse();
        this.ctx.storage.transactionSync(() => {
          this.setState("aborted");
          this.skipRest();
          this.decide("aborted", "by an operator: no more waves; updated devices keep the new version (and the previous one's files) until a rollback");
        });
        break;
      case "rollback": {
        if (r.state !== "running" && r.state !== "paused" && r.state !== "aborted") return refuse();
        if (r.state === "aborted") {
          // An aborted rollout let go of its deployment: its rollback takes it back, unless another rollout holds it.
          const claim = await registryStub(this.env).claimRollout(r.namespace, r.name, r.deployment, this.count(["pending", "updating", "healthy", "failed", "reverting", "reverted", "skipped"]), "rolling_back", r.revision + 1);
          if (!claim.claimed && "active" in claim) return fail("conflict", `rollout ${claim.active} of deployment ${r.deployment} is active: it must end (or be aborted) before this one rolls back`);
        }
        this.startRollback({ by: "operator", wave: null, failed: this.count(["failed"]), updated: this.count(["updating", "healthy", "failed"]), threshold: "operator's decision", tripped: {}, devices: [] });
        await this.ctx.storage.setAlarm(this.clock.now());
        break;
      }
    }
    await this.publish();
    return ok(this.view()!);
  }

  override async alarm() {
    if (!this.hasSchema) return;
    await this.publish(); // a push that failed before
    await this.advance();
    await this.publish();
  }

  private async advance() {
    // Bounded work per run: each iteration either waits (sets the alarm) or makes progress.
    for (let i = 0; i < 50; i++) {
      const next = await this.step(this.clock.now());
      if (next === "again") continue;
      if (next !== null) await this.ctx.storage.setAlarm(next);
      await this.publish();
      return;
    }
    await this.ctx.storage.setAlarm(this.clock.now());
    await this.publish();
  }

  /** One step of the state machine: "again" (more to do now), a time to wake at, or null (nothing until an operator acts). */
  private async step(now: number): Promise<"again" | number | null> {
    const r = this.one<RolloutRow>("SELECT * FROM rollout")!;
    const config = JSON.parse(r.config) as RolloutConfig;
    if (r.state === "rolling_back") return this.revertSome(r);
    if (r.state !== "running") return null;
    const wave = this.one<WaveRow>("SELECT * FROM waves WHERE state IN ('waiting', 'deploying', 'soaking') ORDER BY idx LIMIT 1");
    if (!wave) return this.commit(r);
    if (wave.state === "waiting") {
      this.run("UPDATE waves SET state = 'deploying', started_at = ? WHERE idx = ?", now, wave.idx);
      this.decide(`wave ${wave.idx} started`, `${wave.size} devices`);
      return "again";
    }
    if (wave.state === "deploying") {
      const pending = this.all<TargetRow>("SELECT * FROM targets WHERE wave = ? AND state = 'pending' ORDER BY ord LIMIT ?", wave.idx, STEP);
      if (pending.length === 0) {
        const soakUntil = now + config.gate.soakMs;
        this.run("UPDATE waves SET state = 'soaking', soak_until = ? WHERE idx = ?", soakUntil, wave.idx);
        this.decide(`wave ${wave.idx} soaking`, `every device was sent the new version; the gate is judged at ${iso(soakUntil)} (soak ${config.gate.soakMs} ms)`);
        return "again";
      }
      const rate = rateAllowance(r.rate_start === null ? null : { startedAt: r.rate_start, count: r.rate_count }, now, config.strategy.maxPerMinute);
      if (rate.allowed === 0) return rate.nextAt;
      const batch = pending.slice(0, Math.min(rate.allowed, STEP));
      await this.sendNewVersion(r, batch, now, rate.window);
      return "again";
    }
    // soaking
    if (now < wave.soak_until!) return wave.soak_until!;
    return this.gate(r, config, wave, now);
  }

  private async sendNewVersion(r: RolloutRow, batch: TargetRow[], now: number, window: RateWindow) {
    const template = JSON.parse(r.template) as DevicePart["modules"];
    const held = await mapWithConcurrency(batch, FANOUT, (t) => deviceStub(this.env, t.device).deploymentPart(r.namespace, r.deployment));
    const generation = await deploymentStub(this.env, r.namespace, r.deployment).placeEach(
      { id: r.deployment, namespace: r.namespace, source: "signed", signedBy: r.signed_by },
      batch.map((t) => ({ device: t.device, placements: placementsOf(t.device, template) })),
    );
    if (generation === null) throw new Error(`deployment ${r.deployment} belongs to another namespace`);
    const sent = await mapWithConcurrency(batch, FANOUT, async (t, i) => {
      const prev = held[i] ?? null;
      const part: DevicePart = { deployment: r.deployment, generation, source: "signed", modules: template, ...(prev ? { keep: prev.generation } : {}) };
      try {
        const out = await deviceStub(this.env, t.device).putDeployment(r.namespace, part);
        return { t, prev, error: out.ok ? null : out.detail };
      } catch (e) {
        return { t, prev, error: String(e) };
      }
    });
    this.ctx.storage.transactionSync(() => {
      for (const s of sent) {
        this.run`UPDATE targets SET state = ${s.error ? "failed" : "updating"}, prev_part = ${s.prev ? JSON.stringify(s.prev) : null}, prev_generation = ${s.prev?.generation ?? null},
          generation = ${generation}, started_at = ${now}, reasons = ${JSON.stringify(s.error ? [`could not be sent the new version: ${s.error}`] : [])} WHERE device = ${s.t.device}`;
      }
      this.run("UPDATE rollout SET rate_start = ?, rate_count = ?, updated_at = ?", window.startedAt, window.count + batch.length, now);
    });
  }

  /** The gate after a wave's soak: every device on the new version so far is judged. */
  private async gate(r: RolloutRow, config: RolloutConfig, wave: WaveRow, now: number): Promise<"again" | number> {
    const updated = this.all<TargetRow>("SELECT * FROM targets WHERE state IN ('updating', 'healthy', 'failed') AND generation IS NOT NULL ORDER BY ord");
    const digests = (JSON.parse(r.template) as DevicePart["modules"]).map((m) => m.digest);
    const samples = await mapWithConcurrency(updated, FANOUT, async (t) => {
      try {
        return await deviceStub(this.env, t.device).rolloutSample(r.namespace, r.deployment, t.started_at!, digests);
      } catch {
        return null;
      }
    });
    let pending = 0;
    this.ctx.storage.transactionSync(() => {
      for (const [i, t] of updated.entries()) {
        const sample: DeviceHealthSample = samples[i] ?? { deploymentState: null, deploymentReason: "the device could not be asked", generation: null, silentMs: null, calls: 0, failedCalls: 0, services: 0, serviceCrashes: 0, crashedServices: [] };
        // A failure recorded when sending stays: the device never got the version.
        if (t.state === "failed" && t.sample === null) continue;
        const v = judgeDevice(sample, t.generation!, t.started_at!, now, config.gate);
        const state: RolloutDeviceState = v.verdict === "healthy" ? "healthy" : v.verdict === "failed" ? "failed" : "updating";
        if (v.verdict === "pending") pending++;
        this.run`UPDATE targets SET state = ${state}, reasons = ${JSON.stringify(v.verdict === "healthy" ? [] : v.reasons)}, gates = ${JSON.stringify(v.verdict === "failed" ? v.gates : [])}, sample = ${JSON.stringify(sample)} WHERE device = ${t.device}`;
      }
    });
    const failed = this.count(["failed"]);
    const total = this.count(["updating", "healthy", "failed"]);
    const healthy = this.count(["healthy"]);
    this.run("UPDATE waves SET gate = ? WHERE idx = ?", JSON.stringify({ evaluatedAt: now, healthy, failed, pending }), wave.idx);
    if (pastThreshold(failed, total, config.rollback)) {
      const all = this.all<Pick<TargetRow, "gates">>("SELECT gates FROM targets WHERE state = 'failed'").map((t) => ({ gates: JSON.parse(t.gates) as RolloutGateName[] }));
      const devices = this.all<TargetRow>("SELECT * FROM targets WHERE state = 'failed' ORDER BY ord LIMIT 50").map((t) => ({ device: t.device, gates: JSON.parse(t.gates) as RolloutGateName[], reasons: JSON.parse(t.reasons) as string[] }));
      this.run("UPDATE waves SET state = 'failed' WHERE idx = ?", wave.idx);
      this.startRollback({ by: "gate", wave: wave.idx, failed, updated: total, threshold: describeThreshold(config.rollback), tripped: trippedGates(all), devices });
      return "again";
    }
    if (pending > 0) {
      this.decide(`wave ${wave.idx} gate waiting`, `${pending} devices still applying; ${healthy} healthy, ${failed} failed of ${total} updated`);
      return now + Math.min(RECHECK_MS, config.gate.applyTimeoutMs);
    }
    this.run("UPDATE waves SET state = 'passed' WHERE idx = ?", wave.idx);
    this.decide(`wave ${wave.idx} passed`, `${healthy} healthy, ${failed} failed of ${total} updated (rollback at ${describeThreshold(config.rollback)})`);
    return "again";
  }

  private startRollback(reason: RollbackReason) {
    this.ctx.storage.transactionSync(() => {
      this.run("UPDATE rollout SET state = 'rolling_back', rollback = ?, updated_at = ?, revision = revision + 1", JSON.stringify(reason), this.clock.now());
      this.skipRest();
      this.decide(
        "rolling back",
        reason.by === "gate"
          ? `wave ${reason.wave}'s gate: ${reason.failed} of ${reason.updated} updated devices failed (${Object.entries(reason.tripped).map(([g, n]) => `${g}: ${n}`).join(", ")}), past the threshold (${reason.threshold}); every updated device goes back to its previous version`
          : `by an operator; every updated device goes back to its previous version`,
      );
    });
  }

  /** Devices not sent the new version will not be; waves not begun will not begin. */
  private skipRest() {
    this.run("UPDATE targets SET state = 'skipped' WHERE state = 'pending'");
    this.run("UPDATE waves SET state = 'skipped' WHERE state IN ('waiting', 'deploying', 'soaking')");
  }

  /** Sends a batch of updated devices their previous version back (or removes the deployment where there was none). */
  private async revertSome(r: RolloutRow): Promise<"again" | null> {
    const batch = this.all<TargetRow>("SELECT * FROM targets WHERE state IN ('updating', 'healthy', 'failed', 'reverting') AND generation IS NOT NULL ORDER BY ord LIMIT ?", STEP);
    if (batch.length === 0) {
      this.setState("rolled_back");
      this.decide("rolled back", `${this.count(["reverted"])} devices are back on their previous version`);
      return null;
    }
    const meta = { id: r.deployment, namespace: r.namespace, source: "signed" as const, signedBy: r.signed_by };
    const withPrev = batch.filter((t) => t.prev_part !== null);
    const without = batch.filter((t) => t.prev_part === null);
    const results: { device: string; error: string | null }[] = [];
    if (withPrev.length > 0) {
      const generation = await deploymentStub(this.env, r.namespace, r.deployment).placeEach(meta, withPrev.map((t) => ({ device: t.device, placements: placementsOf(t.device, (JSON.parse(t.prev_part!) as DevicePart).modules) })));
      results.push(...(await mapWithConcurrency(withPrev, FANOUT, async (t) => {
        const prev = JSON.parse(t.prev_part!) as DevicePart;
        // The same modules and files as before, under a newer generation (generations only move forward).
        const part: DevicePart = { deployment: prev.deployment, generation: generation!, source: prev.source, modules: prev.modules };
        try {
          const out = await deviceStub(this.env, t.device).putDeployment(r.namespace, part);
          return { device: t.device, error: out.ok ? null : out.detail };
        } catch (e) {
          return { device: t.device, error: String(e) };
        }
      })));
    }
    if (without.length > 0) {
      const generation = await deploymentStub(this.env, r.namespace, r.deployment).removeEach(r.namespace, without.map((t) => t.device));
      results.push(...(await mapWithConcurrency(without, FANOUT, async (t) => {
        try {
          const out = await deviceStub(this.env, t.device).removeDeployment(r.namespace, r.deployment, generation);
          return { device: t.device, error: out.ok || out.problem === "not-found" ? null : out.detail };
        } catch (e) {
          return { device: t.device, error: String(e) };
        }
      })));
    }
    this.ctx.storage.transactionSync(() => {
      for (const x of results) {
        const t = batch.find((b) => b.device === x.device)!;
        const reasons = [...(JSON.parse(t.reasons) as string[]), ...(x.error ? [`revert: ${x.error}`] : [])];
        this.run`UPDATE targets SET state = ${x.error ? "reverting" : "reverted"}, reasons = ${JSON.stringify(reasons)} WHERE device = ${x.device}`;
      }
    });
    // A device that refused its revert is tried again on the next alarm, not in a loop now.
    return results.some((x) => x.error) ? null : "again";
  }

  /** Every wave passed: the previous versions' files may go from the devices. */
  private async commit(r: RolloutRow): Promise<null> {
    const healthy = this.all<TargetRow>("SELECT device, generation FROM targets WHERE state = 'healthy'") as Pick<TargetRow, "device" | "generation">[];
    await mapWithConcurrency(healthy, FANOUT, async (t) => {
      try {
        await deviceStub(this.env, t.device).releaseKept(r.namespace, r.deployment, t.generation!);
      } catch {
        // the part keeps its `keep` until the next deploy: the device holds one spare generation of files
      }
    });
    this.setState("committed");
    this.decide("committed", `every wave passed; ${healthy.length} devices run the new version and may drop the previous one's files`);
    return null;
  }

  private count(states: RolloutDeviceState[]): number {
    return this.one<{ n: number }>(`SELECT COUNT(*) AS n FROM targets WHERE state IN (${states.map(() => "?").join(", ")})`, ...states)!.n;
  }

  private view(): RolloutView | null {
    const r = this.one<RolloutRow>("SELECT * FROM rollout");
    if (!r) return null;
    const config = JSON.parse(r.config) as RolloutConfig;
    const targets = this.all<TargetRow>("SELECT * FROM targets ORDER BY ord");
    const counts: Record<string, number> = {};
    for (const t of targets) counts[t.state] = (counts[t.state] ?? 0) + 1;
    return {
      id: r.name,
      namespace: r.namespace,
      deployment: r.deployment,
      state: r.state,
      ...config,
      createdAt: iso(r.created_at)!,
      updatedAt: iso(r.updated_at)!,
      targets: targets.length,
      counts,
      waves: this.all<WaveRow>("SELECT * FROM waves ORDER BY idx").map((w) => {
        const g = w.gate ? (JSON.parse(w.gate) as { evaluatedAt: number; healthy: number; failed: number; pending: number }) : null;
        return { index: w.idx, size: w.size, state: w.state, startedAt: iso(w.started_at), soakUntil: iso(w.soak_until), gate: g ? { ...g, evaluatedAt: iso(g.evaluatedAt)! } : null };
      }),
      devices: targets.map((t) => ({
        device: t.device, wave: t.wave, state: t.state, previousGeneration: t.prev_generation, generation: t.generation, startedAt: iso(t.started_at),
        reasons: JSON.parse(t.reasons) as string[], gates: JSON.parse(t.gates) as RolloutGateName[],
        sample: t.sample ? { services: 0, serviceCrashes: 0, crashedServices: [], ...(JSON.parse(t.sample) as Partial<DeviceHealthSample>) } as DeviceHealthSample : null,
      })),
      decisions: this.all<{ at: number; decision: string; detail: string }>("SELECT at, decision, detail FROM decisions ORDER BY seq").map((d) => ({ at: iso(d.at)!, decision: d.decision, detail: d.detail })),
      rollbackReason: r.rollback ? rollbackOf(r.rollback) : null,
    };
  }
}

/** A stored rollback reason; those recorded before gates were named read as naming none. */
function rollbackOf(stored: string): RollbackReason {
  const r = JSON.parse(stored) as Partial<RollbackReason> & Pick<RollbackReason, "by" | "wave" | "failed" | "updated" | "threshold">;
  return { ...r, tripped: r.tripped ?? {}, devices: (r.devices ?? []).map((d) => ({ ...d, gates: d.gates ?? [] })) };
}

function placementsOf(device: string, modules: DevicePart["modules"]): Placement[] {
  return modules.map((m) => ({ device, module: m.name, digest: m.digest, functions: Object.keys(m.functions) }));
}

/** Registers this class as the one behind the ROLLOUTS binding (see src/platform/env.ts). */
declare module "../platform/env.js" {
  interface DurableObjectClasses {
    ROLLOUTS: RolloutObject;
  }
}
