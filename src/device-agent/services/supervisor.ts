/**
 * The agent's service supervisor. Each service runs as a child process of its own
 * (service-main.js, detached: its own process group), so suspend is SIGSTOP and resume
 * SIGCONT, and an agent crash or upgrade does not stop it. What the supervisor knows of a
 * service is its record in `<dataDir>/services/<name>/state.json` (written atomically at
 * every change): a restarted agent reads the records and adopts the processes still alive
 * (same pid and start time), and handles the ones that ended while it was down as ended.
 * The restart budget (core/restart-budget.ts) is applied here, from local state, so a
 * service keeps being restarted (and crash loops are still stopped) while the control
 * plane is unreachable. Every status change is asked of core/service-lifecycle.ts first.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { afterExit, FRESH_BUDGET, rearmAt, rearmed, type BudgetState, type ProcessEnd } from "../../core/restart-budget.js";
import { serviceTransition, type ServiceEvent } from "../../core/service-lifecycle.js";
import { coalesced } from "../../core/coalesced.js";
import type { LogLine } from "../../protocol/job.js";
import { SERVICE_LIMITS, type DesiredService, type DesiredServices, type ServiceActual, type ServiceDesired, type ServiceSpec, type ServiceStatus } from "../../protocol/service.js";
import type { AgentLog } from "../agent-log.js";
import { ModuleRejected, type ModuleCache } from "../module-cache.js";
import { agentFile } from "../agent-files.js";
import { alive, sample, signal } from "./proc.js";
import { ensureDir, FILES, parseOutputLine, readJson, removeDir, serviceDir, servicesRoot, writeJsonAtomic, type ExitReport, type RunConfig } from "./files.js";

/** Output bytes (as JSON) one heartbeat carries in all. */
const HEARTBEAT_LINE_BYTES = 96 * 1024;

/** The first lines of `lines` that fit in `max` lines and `bytes` bytes of JSON. */
function takeLines(lines: LogLine[], max: number, bytes: number, spent: (used: number) => void): LogLine[] {
  let used = 0;
  let n = 0;
  for (; n < Math.min(max, lines.length); n++) {
    const size = JSON.stringify(lines[n]).length + 1;
    if (used + size > bytes) break;
    used += size;
  }
  spent(used);
  return lines.slice(0, n);
}

const SERVICE_MAIN = fileURLToPath(agentFile("services/service-main.js"));

export interface SupervisorOptions {
  dataDir: string;
  maxMemoryMb: number;
  maxOutputBytes: number;
  /** how often processes are checked and output is read */
  tickMs?: number;
  /**
   * The agent's own environment variables a service's envFrom may pass to its guest, as the
   * agent's operator chose (--service-env-allow). Default none: a spec's envFrom names
   * outside this list are dropped (and said so in the service's lastError).
   */
  serviceEnvAllow?: readonly string[];
}

/** A service's envFrom split into what this agent passes and what it drops. */
export function allowedEnvFrom(envFrom: readonly string[], allow: readonly string[] | undefined, host: NodeJS.ProcessEnv): { env: Record<string, string>; dropped: string[] } {
  const allowed = new Set(allow ?? []);
  const env: Record<string, string> = {};
  const dropped: string[] = [];
  for (const name of envFrom) {
    if (!allowed.has(name)) dropped.push(name);
    else if (host[name] !== undefined) env[name] = host[name]!;
  }
  return { env, dropped };
}

export interface SupervisorDeps {
  modules: ModuleCache;
  /** a deployment's module directory on this device (null: that deployment is not applied here) */
  deploymentDir: (deployment: string, module: string) => string | null;
  fetchDesired: () => Promise<DesiredServices>;
  log: AgentLog;
  now?: () => number;
}

/** What is kept on disk per service. */
export interface ServiceRecord {
  name: string;
  spec: ServiceSpec;
  desired: ServiceDesired;
  run: number;
  resets: number;
  status: ServiceStatus;
  reason: string;
  exitCode: number | null;
  lastError: string | null;
  startedAt: number | null;
  restartAt: number | null;
  rearmAt: number | null;
  pid: number | null;
  pidStart: string | null;
  budget: BudgetState;
}

interface Live {
  rec: ServiceRecord;
  dir: string;
  timer: NodeJS.Timeout | null;
  child: ChildProcess | null;
  /** a spawn is under way */
  spawning: boolean;
  /** the last lines (a bounded ring), and the ones not yet shipped */
  ring: LogLine[];
  unsent: LogLine[];
  tail: { offset: number; ino: number; partial: string };
  cpu: { ms: number; at: number; percent: number; rss: number };
  writes: Promise<void>;
}

export class ServiceSupervisor {
  private readonly live = new Map<string, Live>();
  private ticker: NodeJS.Timeout | null = null;
  private appliedVersion = -1;
  /** One convergence at a time (fetch the desired services, apply them); a request during one runs another after it. */
  readonly converge = coalesced(async () => {
    const desired = await this.deps.fetchDesired();
    await this.apply(desired.services);
    this.appliedVersion = desired.version;
  });
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly opts: SupervisorOptions, private readonly deps: SupervisorDeps) {
    this.now = deps.now ?? Date.now;
  }

  // ---- start, adopt, stop -------------------------------------------------------------

  /**
   * Reads the records left by an earlier agent and takes their processes back ("open"):
   * alive ones are adopted as they were (RUNNING or STOPPED), ended ones go through the
   * restart budget, and waiting restarts or re-arms are set again.
   */
  async open() {
    await ensureDir(servicesRoot(this.opts.dataDir));
    for (const name of await readdir(servicesRoot(this.opts.dataDir))) {
      const dir = serviceDir(this.opts.dataDir, name);
      const rec = await readJson<ServiceRecord>(join(dir, FILES.state));
      if (!rec) continue;
      const l = this.track(rec);
      this.skipToEndOfOutput(l);
      if (rec.pid !== null && alive(rec.pid, rec.pidStart)) {
        this.deps.log("info", "service adopted", { service: name, pid: rec.pid, status: rec.status, run: rec.run });
        rec.reason = `${rec.reason.replace(/ \(adopted by a restarted agent, pid \d+\)$/, "")} (adopted by a restarted agent, pid ${rec.pid})`.slice(0, 500);
        void this.persist(l);
      } else if (rec.pid !== null) {
        await this.ended(l, rec.pid, null);
      } else if (rec.status === "STARTING") {
        void this.spawnRun(l); // the agent stopped in the middle of a start
      } else {
        this.arm(l);
      }
    }
    this.ticker = setInterval(() => this.tick(), this.opts.tickMs ?? 200);
    this.ticker.unref();
  }

  /** Stops supervising (the agent is stopping): the services keep running, and the next agent adopts them. */
  stop() {
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    for (const l of this.live.values()) {
      if (l.timer) clearTimeout(l.timer);
      l.child?.unref();
    }
  }

  /** Every write of records so far, done (tests and a clean stop). */
  async flushed() {
    await Promise.all([...this.live.values()].map((l) => l.writes));
  }

  // ---- desired state ------------------------------------------------------------------

  /** The control plane's desired-services version; another one than applied: fetch and apply. */
  noteVersion(version: number | undefined) {
    if (version !== undefined && version !== this.appliedVersion) void this.converge().catch((e) => this.deps.log("warn", "could not apply services", { error: String(e) }));
  }

  async apply(services: DesiredService[]) {
    if (this.stopped) return;
    const wanted = new Set(services.map((d) => d.spec.name));
    for (const d of services) {
      const l = this.live.get(d.spec.name);
      if (!l) {
        // A run the control plane saw end for good is not started again by an agent that lost its state.
        if (d.ended || d.desired === "killed") continue;
        await this.create(d);
        continue;
      }
      if (d.run > l.rec.run || JSON.stringify(d.spec) !== JSON.stringify(l.rec.spec)) {
        await this.newRun(l, d);
        continue;
      }
      l.rec.desired = d.desired;
      if (d.resets > l.rec.resets) this.reset(l, d.resets);
      this.reconcile(l);
    }
    for (const [name, l] of this.live) if (!wanted.has(name)) await this.remove(l);
  }

  private async create(d: DesiredService) {
    const dir = serviceDir(this.opts.dataDir, d.spec.name);
    await removeDir(dir); // leftovers of an earlier service of that name
    await ensureDir(dir);
    const rec: ServiceRecord = {
      name: d.spec.name, spec: d.spec, desired: d.desired, run: d.run, resets: d.resets,
      status: "STARTING", reason: "created", exitCode: null, lastError: null, startedAt: null,
      restartAt: null, rearmAt: null, pid: null, pidStart: null, budget: { ...FRESH_BUDGET },
    };
    const first = serviceTransition(null, d.desired === "suspended" ? "create_stopped" : "create");
    rec.status = first.ok ? first.to : "STARTING";
    rec.reason = d.desired === "suspended" ? "created stopped: resume starts it" : "created";
    const l = this.track(rec);
    await this.persist(l);
    if (rec.status === "STARTING") void this.spawnRun(l);
  }

  /** A new run (a schedule's occurrence, a changed spec): the old process ends, the budget starts afresh. */
  private async newRun(l: Live, d: DesiredService) {
    this.killProcess(l);
    this.clearTimer(l);
    Object.assign(l.rec, { spec: d.spec, run: d.run, resets: d.resets, desired: d.desired, budget: { ...FRESH_BUDGET }, exitCode: null, restartAt: null, rearmAt: null });
    if (!this.move(l, "new_run", { reason: `run ${d.run} started` })) return;
    if (d.desired === "running") void this.spawnRun(l);
    else this.reconcile(l);
  }

  /** A user's reset: the budget re-arms; a CRASHED service starts again, one waiting to restart starts now. */
  private reset(l: Live, resets: number) {
    l.rec.resets = resets;
    l.rec.budget = rearmed();
    l.rec.rearmAt = null;
    this.deps.log("info", "service restart budget reset", { service: l.rec.name });
    if (l.rec.desired !== "running") return void this.persist(l);
    if (l.rec.status === "CRASHED") {
      this.clearTimer(l);
      if (this.move(l, "rearm", { reason: "restart budget reset by a user" })) void this.spawnRun(l);
    } else if (l.rec.status === "BACKOFF") {
      this.clearTimer(l);
      if (this.move(l, "restart_due", { reason: "restart budget reset by a user", restartAt: null })) void this.spawnRun(l);
    } else {
      void this.persist(l);
    }
  }

  /** Brings a service's status to what is desired (suspend, resume, kill). */
  private reconcile(l: Live) {
    const { rec } = l;
    if (rec.desired === "killed") {
      if (rec.status === "KILLED") return;
      this.killProcess(l);
      this.clearTimer(l);
      if (this.move(l, "kill", { reason: "killed by a user", restartAt: null, rearmAt: null })) this.deps.log("info", "service killed", { service: rec.name });
      return;
    }
    if (rec.desired === "suspended") {
      if (rec.status === "RUNNING" || (rec.status === "STARTING" && rec.pid !== null)) {
        this.signalGroup(rec.pid!, "SIGSTOP");
        if (this.move(l, "suspend", { reason: "suspended by a user" })) this.deps.log("info", "service suspended", { service: rec.name, pid: rec.pid });
      } else if (rec.status === "BACKOFF") {
        this.clearTimer(l);
        this.move(l, "suspend", { reason: "suspended by a user while waiting to restart", restartAt: null });
      }
      return;
    }
    if (rec.status === "STOPPED") {
      if (rec.pid !== null && alive(rec.pid, rec.pidStart)) {
        this.signalGroup(rec.pid, "SIGCONT");
        if (this.move(l, "resume_frozen", { reason: "resumed by a user" })) this.deps.log("info", "service resumed", { service: rec.name, pid: rec.pid });
      } else if (!l.spawning && this.move(l, "resume_start", { reason: "resumed by a user: starting", pid: null })) {
        void this.spawnRun(l);
      }
    }
  }

  private async remove(l: Live) {
    this.killProcess(l);
    this.clearTimer(l);
    this.live.delete(l.rec.name);
    await l.writes;
    await rm(l.dir, { recursive: true, force: true });
    this.deps.log("info", "service removed", { service: l.rec.name });
  }

  // ---- processes ----------------------------------------------------------------------

  private async spawnRun(l: Live) {
    if (l.spawning || this.stopped) return;
    l.spawning = true;
    const { rec } = l;
    const run = rec.run;
    try {
      await this.deps.modules.get(rec.spec.module); // fetched, verified, capped and compiled here first
      const sandboxDir = this.sandboxDir(rec);
      await ensureDir(sandboxDir);
      const { env, dropped } = allowedEnvFrom(rec.spec.envFrom, this.opts.serviceEnvAllow, process.env);
      if (dropped.length > 0) {
        rec.lastError = `envFrom names not allowed by this agent (--service-env-allow), dropped: ${dropped.join(", ")}`;
        this.deps.log("warn", "service envFrom names dropped", { service: rec.name, dropped });
      }
      Object.assign(env, rec.spec.env);
      const config: RunConfig = {
        name: rec.name, run, dataDir: this.opts.dataDir, digest: rec.spec.module, entry: rec.spec.entry, args: rec.spec.args, env,
        sandboxDir, maxMemoryMb: this.opts.maxMemoryMb, maxOutputBytes: this.opts.maxOutputBytes,
      };
      await writeJsonAtomic(join(l.dir, FILES.run), config); // 0600: it holds the values passed
      await rm(join(l.dir, FILES.exit), { force: true });
      if (rec.status !== "STARTING" || rec.run !== run || this.stopped || !this.live.has(rec.name)) return; // killed, suspended or removed meanwhile
      const log = openSync(join(l.dir, FILES.child), "a");
      const child = spawn(process.execPath, [SERVICE_MAIN, join(l.dir, FILES.run)], { detached: true, stdio: ["ignore", log, log], cwd: l.dir, env: {} });
      closeSync(log);
      const pid = child.pid;
      if (pid === undefined) throw new Error("the service process could not be started");
      child.unref();
      l.child = child;
      child.once("exit", (code, sig) => {
        if (l.child === child) l.child = null;
        void this.ended(l, pid, { code, signal: sig });
      });
      const s = sample(pid);
      l.cpu = { ms: s?.cpuMs ?? 0, at: this.now(), percent: 0, rss: s?.rssBytes ?? 0 };
      this.move(l, "spawned", { pid, pidStart: s?.startTime ?? null, startedAt: this.now(), exitCode: null, restartAt: null, reason: rec.budget.restarts.length ? `restarted (${rec.budget.restarts.length} of ${rec.spec.restart.maxRestarts})` : "started" });
      this.deps.log("info", "service started", { service: rec.name, pid, run, restarts: rec.budget.restarts.length });
    } catch (e) {
      if (rec.status !== "STARTING" || rec.run !== run) return;
      const rejected = e instanceof ModuleRejected;
      await this.ended(l, null, null, { failed: true, what: `${rejected ? "the module cannot run here" : "could not start"}: ${String((e as Error)?.message ?? e)}`.slice(0, 500) });
    } finally {
      l.spawning = false;
      this.afterSpawn(l, run);
    }
  }

  /** Desired state may have moved on while it started (suspended, killed, a new run). */
  private afterSpawn(l: Live, run: number) {
    const { rec } = l;
    if (this.live.get(rec.name) !== l || this.stopped) return;
    if (rec.run !== run && rec.status === "STARTING" && rec.pid === null && rec.desired === "running") {
      void this.spawnRun(l); // a new run came while the old one was starting
      return;
    }
    this.reconcile(l);
  }

  private sandboxDir(rec: ServiceRecord): string {
    if (rec.spec.sandbox === "own") return join(serviceDir(this.opts.dataDir, rec.name), "sandbox");
    const dir = this.deps.deploymentDir(rec.spec.sandbox.deployment, rec.spec.sandbox.module);
    if (!dir) throw new Error(`deployment ${rec.spec.sandbox.deployment} (module ${rec.spec.sandbox.module}) is not applied on this device`);
    return dir;
  }

  /**
   * A process ended (or a start failed, `pid` null): the restart budget decides between
   * BACKOFF (restart at a time), EXITED and CRASHED. An end we caused (kill, a new run)
   * is not news: its pid is no longer the record's.
   */
  private async ended(l: Live, pid: number | null, how: { code: number | null; signal: NodeJS.Signals | null } | null, failedStart?: { failed: true; what: string }) {
    const { rec } = l;
    if (pid !== null && rec.pid !== pid) return;
    this.readOutput(l);
    let end: ProcessEnd;
    let exitCode: number | null = null;
    if (failedStart) {
      end = { at: this.now(), startedAt: null, ...failedStart };
    } else {
      const report = await readJson<ExitReport>(join(l.dir, FILES.exit));
      const mine = report && report.pid === pid && report.run === rec.run ? report : null;
      exitCode = mine ? mine.exitCode : how?.code ?? null;
      const what = mine
        ? mine.ok
          ? `exited with code ${mine.exitCode ?? 0}`
          : mine.message ?? `failed (${mine.kind})`
        : how?.signal
          ? `killed by ${how.signal}`
          : how
            ? `exited with code ${how.code} without a report`
            : "its process ended while the agent was down";
      end = { at: mine?.at ?? this.now(), startedAt: rec.startedAt, failed: mine ? !mine.ok : true, what: what.slice(0, 500) };
    }
    if (rec.pid !== pid && pid !== null) return; // handled meanwhile
    rec.pid = null;
    rec.pidStart = null;
    if (rec.status === "KILLED") return void this.persist(l);
    const d = afterExit(rec.spec.restart, rec.budget, end);
    const lastError = end.failed ? end.what : rec.lastError;
    rec.budget = d.budget;
    if (d.action === "restart") {
      if (!this.move(l, "exit_restart", { exitCode, lastError, reason: d.reason, restartAt: d.at })) return;
      this.deps.log("warn", "service ended; restarting", { service: rec.name, what: end.what, delayMs: d.delayMs, restarts: d.budget.restarts.length });
    } else if (d.action === "exited") {
      if (!this.move(l, "exit_clean", { exitCode, lastError, reason: d.reason, restartAt: null })) return;
      this.deps.log("info", "service exited", { service: rec.name, what: end.what });
    } else {
      if (!this.move(l, "exit_crashed", { exitCode, lastError, reason: d.reason, restartAt: null, rearmAt: d.rearmAt })) return;
      this.deps.log("error", "service crashed: restart budget spent", { service: rec.name, reason: d.reason, rearmAt: d.rearmAt });
    }
    if (rec.desired !== "running") this.reconcile(l); // e.g. it ended while suspended: it waits STOPPED for the resume
    this.arm(l);
  }

  /** Sets the timer a status waits on: a restart (BACKOFF) or a re-arm (CRASHED). */
  private arm(l: Live) {
    this.clearTimer(l);
    const { rec } = l;
    if (rec.desired !== "running") return;
    const at = rec.status === "BACKOFF" ? rec.restartAt : rec.status === "CRASHED" ? (rec.rearmAt ?? rearmAt(rec.spec.restart, rec.budget)) : null;
    if (at === null) return;
    l.timer = setTimeout(() => {
      l.timer = null;
      if (this.stopped || rec.desired !== "running") return;
      if (rec.status === "BACKOFF") {
        if (this.move(l, "restart_due", { restartAt: null })) void this.spawnRun(l);
      } else if (rec.status === "CRASHED") {
        rec.budget = rearmed();
        if (this.move(l, "rearm", { rearmAt: null, reason: "restart budget re-armed after its cool-off" })) {
          this.deps.log("info", "service restart budget re-armed", { service: rec.name });
          void this.spawnRun(l);
        }
      }
    }, Math.max(0, at - this.now()));
  }

  private clearTimer(l: Live) {
    if (l.timer) clearTimeout(l.timer);
    l.timer = null;
  }

  /** Ends the service's process for good (a frozen one too: SIGKILL needs no SIGCONT). */
  private killProcess(l: Live) {
    const { rec } = l;
    if (rec.pid !== null && alive(rec.pid, rec.pidStart)) this.signalGroup(rec.pid, "SIGKILL");
    rec.pid = null;
    rec.pidStart = null;
    l.child = null;
  }

  /** The service's process group (it was spawned detached: pgid = pid), else the process. */
  private signalGroup(pid: number, sig: NodeJS.Signals) {
    if (!signal(-pid, sig)) signal(pid, sig);
  }

  private move(l: Live, event: ServiceEvent, patch: Partial<ServiceRecord>): boolean {
    const t = serviceTransition(l.rec.status, event);
    if (!t.ok) {
      this.deps.log("debug", "service transition refused", { service: l.rec.name, reason: t.reason });
      return false;
    }
    Object.assign(l.rec, patch, { status: t.to });
    if (patch.reason) l.rec.reason = patch.reason.slice(0, 500);
    void this.persist(l);
    return true;
  }

  private track(rec: ServiceRecord): Live {
    const l: Live = {
      rec, dir: serviceDir(this.opts.dataDir, rec.name), timer: null, child: null, spawning: false,
      ring: [], unsent: [], tail: { offset: 0, ino: 0, partial: "" }, cpu: { ms: 0, at: this.now(), percent: 0, rss: 0 }, writes: Promise.resolve(),
    };
    this.live.set(rec.name, l);
    return l;
  }

  private persist(l: Live): Promise<void> {
    const snapshot = { ...l.rec };
    l.writes = l.writes.then(() => (this.live.get(l.rec.name) === l ? writeJsonAtomic(join(l.dir, FILES.state), snapshot) : undefined)).catch((e) => this.deps.log("warn", "could not save a service's state", { service: l.rec.name, error: String(e) }));
    return l.writes;
  }

  // ---- watching: processes, output, CPU and memory ------------------------------------

  private tick() {
    for (const l of this.live.values()) {
      this.readOutput(l);
      // An adopted process is not our child: no exit event, so it is watched.
      const { pid, pidStart } = l.rec;
      if (pid !== null && !l.child && !alive(pid, pidStart)) void this.ended(l, pid, null);
    }
  }

  /** Output lines already on disk when a service is adopted were shipped by the agent before. */
  private skipToEndOfOutput(l: Live) {
    try {
      const st = statSync(join(l.dir, FILES.output));
      l.tail = { offset: st.size, ino: st.ino, partial: "" };
    } catch {
      /* no output yet */
    }
  }

  /** Reads new output lines (following the child's rotation to output.log.1) into the ring. */
  private readOutput(l: Live) {
    const path = join(l.dir, FILES.output);
    let st;
    try {
      st = statSync(path);
    } catch {
      return;
    }
    if (st.ino !== l.tail.ino) {
      if (l.tail.ino !== 0) this.readFrom(l, `${path}.1`, l.tail.ino);
      l.tail = { offset: 0, ino: st.ino, partial: "" };
    }
    if (st.size > l.tail.offset) this.readFrom(l, path, st.ino);
  }

  private readFrom(l: Live, path: string, ino: number) {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      return;
    }
    try {
      if (fstatSync(fd).ino !== ino) return;
      const buf = Buffer.alloc(64 * 1024);
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, l.tail.offset);
        if (n <= 0) break;
        l.tail.offset += n;
        const text = l.tail.partial + buf.subarray(0, n).toString("utf8");
        const lines = text.split("\n");
        l.tail.partial = lines.pop()!;
        for (const t of lines) {
          const line = parseOutputLine(t);
          if (!line) continue;
          l.ring.push(line);
          l.unsent.push(line);
        }
        if (l.ring.length > SERVICE_LIMITS.ringLines) l.ring.splice(0, l.ring.length - SERVICE_LIMITS.ringLines);
        if (l.unsent.length > SERVICE_LIMITS.ringLines) l.unsent.splice(0, l.unsent.length - SERVICE_LIMITS.ringLines);
      }
    } finally {
      closeSync(fd);
    }
  }

  // ---- reporting ----------------------------------------------------------------------

  /** Each service's status, CPU and memory, and output lines not yet shipped (for the heartbeat). */
  actuals(): ServiceActual[] {
    const now = this.now();
    // One heartbeat carries at most this much output (the rest goes with the next ones): a
    // beat must stay well under the request body limit however many services are chatty.
    let budget = HEARTBEAT_LINE_BYTES;
    return [...this.live.values()].map((l) => {
      const { rec } = l;
      this.readOutput(l);
      const s = rec.pid !== null ? sample(rec.pid) : null;
      if (s) {
        const dt = now - l.cpu.at;
        const percent = dt > 0 ? Math.max(0, ((s.cpuMs - l.cpu.ms) / dt) * 100) : l.cpu.percent;
        l.cpu = { ms: s.cpuMs, at: now, percent, rss: s.rssBytes };
      } else {
        l.cpu = { ms: 0, at: now, percent: 0, rss: 0 };
      }
      return {
        name: rec.name, run: rec.run, status: rec.status, reason: rec.reason, exitCode: rec.exitCode, restarts: rec.budget.restarts.length,
        lastError: rec.lastError?.slice(0, 2000) ?? null, startedAt: rec.startedAt, restartAt: rec.restartAt ?? rec.rearmAt, pid: rec.pid,
        cpuMs: l.cpu.ms, cpuPercent: Math.round(l.cpu.percent * 100) / 100, rssBytes: l.cpu.rss, resets: rec.resets,
        lines: takeLines(l.unsent, SERVICE_LIMITS.linesPerBeat, budget, (used) => (budget -= used)),
      };
    });
  }

  /** The control plane has the lines a heartbeat carried. */
  shipped(sent: ServiceActual[]) {
    for (const a of sent) {
      const l = this.live.get(a.name);
      if (l) l.unsent.splice(0, a.lines.length);
    }
  }

  /** The last output lines of a service (the agent's ring). */
  ring(name: string): LogLine[] {
    return this.live.get(name)?.ring.slice() ?? [];
  }

  /** Services running in processes now. */
  get processes(): number {
    return [...this.live.values()].filter((l) => l.rec.pid !== null).length;
  }
}
