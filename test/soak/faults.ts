/**
 * The fault suite (issue 9): a real control plane on persisted state, three real agents (one
 * behind the suite's own TCP proxy), jobs of 20-50 ms submitted singly and in batches while the
 * suite SIGKILLs agents, crashes the control plane and blackholes a link; then a bounded drain
 * and the figures. Each job is `tally(tag, ms)`: it appends its tag to a file in its device's
 * sandbox, so the suite counts how many times each job really ran.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CrashableControlPlane } from "../helpers/control-plane-process.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { SoakClient } from "../helpers/soak-client.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { compileWat, WAT } from "../helpers/wat.js";
import { percentile, workerLogLines } from "./report.js";

export interface FaultOptions {
  jobs: number;
  /** submissions are spread over this long; the faults happen inside it */
  submitSeconds: number;
  /** at least this many agent SIGKILLs (more if the submission lasts longer) */
  kills: number;
  /** pause between kills, uniformly in [min, max] */
  killEveryMs: [number, number];
  controlPlaneCrashes: number;
  blackholeMs: number;
  /** how long the drain may take before what is unfinished counts as stuck */
  drainSeconds: number;
  workDir: string;
  log: (line: string) => void;
}

type Submission = { key: string; device: number; tags: number[]; kind: "single" | "batch"; startedAt: number; attempts: number; accepted: boolean };
type Accepted = { tag: number; id: string; device: number; submittedAt: number; acceptedAt: number };
type JobEnd = { id: string; state: string; attempts: number; error: { kind: string; message: string } | null; finishedAt: string | null; args: number[] };
type Window = { from: number; to: number };

export interface FaultReport {
  submissions: { single: number; batch: number; retried: number; batchesRetried: number; notAccepted: number };
  accepted: number;
  lost: number;
  stuck: number;
  states: Record<string, number>;
  failedForInfrastructure: Record<string, number>;
  /** each job that did not succeed: id, device, attempts, runs seen, error */
  notSucceeded: string[];
  executionsPerJob: Record<string, number>;
  duplicates: { total: number; whereAgentSurvived: number; explained: Record<string, number>; unexplained: string[]; ids: string[] };
  /** jobs the control plane holds that no answer named: stored by an attempt whose answer was lost */
  unansweredJobs: { count: number; executed: number; ids: string[] };
  redeliveries: number;
  submitToEndMs: { p50: number | null; p99: number | null; max: number | null };
  /** from the answer that accepted it (retries while the control plane was down excluded) */
  acceptedToEndMs: { p50: number | null; p99: number | null };
  faults: { agentKills: number; killsPerAgent: number[]; failedAgentStarts: string[]; controlPlaneCrashes: number; controlPlaneDownMs: number[]; blackholeMs: number; proxyCuts: number; delayedMs: number };
  client: { networkFailures: number; serverErrors: { status: number; requestId: string | null; path: string; workerLog: string[] }[] };
  drainSeconds: number;
  lostIds: string[];
  stuckIds: string[];
  workDir: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const between = (min: number, max: number) => min + Math.random() * (max - min);
const overlaps = (w: Window, from: number, to: number) => w.from <= to && w.to >= from;

/** One of the three devices: its agent process comes and goes, its data dir stays. */
class Device {
  proc: AgentProcess | null = null;
  deviceId = "";
  /** from each SIGKILL until the restarted agent said it started */
  readonly down: Window[] = [];
  readonly logFile: string;
  constructor(readonly index: number, readonly dataDir: string, readonly server: () => string) {
    this.logFile = `${dataDir}.log`;
  }

  /** restarts whose agent had not said "agent started" after 15 s (it was ended and started again) */
  failedStarts: string[] = [];

  async start(token?: string) {
    const proc = await startAgent({ server: this.server(), dataDir: this.dataDir, ...(token ? { token } : {}), args: ["--log-level", "debug", "--pool-size", "2"], startTimeoutMs: 15_000 });
    this.deviceId = proc.deviceId;
    this.proc = proc;
  }

  /** Keeps what the agent logged (the suite's record of it), then forgets the process. */
  private keepLogs(proc: AgentProcess) {
    appendFileSync(this.logFile, proc.logs.map((l) => JSON.stringify(l)).join("\n") + "\n");
  }

  async kill(): Promise<void> {
    const proc = this.proc!;
    this.proc = null;
    this.down.push({ from: Date.now(), to: Number.POSITIVE_INFINITY });
    await proc.kill("SIGKILL");
    this.keepLogs(proc);
  }

  /** Restarts on the same data dir, as a service manager would: an agent that does not come up is ended and started again. */
  async restart(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.start();
        this.down.at(-1)!.to = Date.now();
        return;
      } catch (e) {
        this.failedStarts.push(`${new Date().toISOString().slice(11, 23)} ${String(e).slice(0, 200)}`);
        if (attempt >= 8) throw e;
        await sleep(1_000);
      }
    }
  }

  async stop() {
    if (this.proc) {
      const proc = this.proc;
      this.proc = null;
      await proc.kill("SIGKILL");
      this.keepLogs(proc);
    }
  }

  /** How many times each tag ran on this device: one line per execution in the module's sandbox file. */
  executions(moduleDigest: string): Map<number, number> {
    const file = join(this.dataDir, "sandbox", moduleDigest, "executions.log");
    const counts = new Map<number, number>();
    if (!existsSync(file)) return counts;
    for (const line of readFileSync(file, "utf8").split("\n")) {
      if (line) counts.set(Number(line), (counts.get(Number(line)) ?? 0) + 1);
    }
    return counts;
  }
}

/** Runs `fn` over `items` with at most `limit` at once. */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

export async function runFaultSuite(opts: FaultOptions): Promise<FaultReport> {
  mkdirSync(opts.workDir, { recursive: true });
  const cp = new CrashableControlPlane(join(opts.workDir, "state"), join(opts.workDir, "worker.log"));
  const proxy = new TcpProxy(() => ({ host: "127.0.0.1", port: Number(new URL(cp.url).port) }));
  const devices = [0, 1, 2].map((i) => new Device(i, join(opts.workDir, `agent-${i}`), () => (i === 0 ? proxy.url : cp.url)));
  const faults: FaultReport["faults"] = { agentKills: 0, killsPerAgent: [0, 0, 0], failedAgentStarts: [], controlPlaneCrashes: 0, controlPlaneDownMs: [], blackholeMs: 0, proxyCuts: 0, delayedMs: 0 };
  const cpDown: Window[] = [];
  const blackholes: Window[] = [];
  try {
    await cp.start();
    await proxy.listen();
    const client = new SoakClient(() => cp.url, cp.adminToken);
    const tally = await compileWat(WAT.tally);
    const uploaded = await fetch(`${cp.url}/v1/modules`, { method: "POST", headers: { authorization: `Bearer ${cp.adminToken}`, "content-type": "application/wasm" }, body: tally });
    const digest = ((await uploaded.json()) as { digest: string }).digest;
    const registerKey = (await client.send<{ key: string }>("POST", "/v1/keys", { role: "register" })).body.key;
    await Promise.all(devices.map((d) => d.start(registerKey)));
    opts.log(`faults: control plane ${cp.url}, agents ${devices.map((d) => d.deviceId).join(", ")} (agent 0 through the proxy on ${proxy.url})`);

    // ---- the plan: which tags go in which submission, to which device --------------------
    const submissions: Submission[] = [];
    for (let tag = 1; tag <= opts.jobs; ) {
      const size = Math.random() < 0.5 ? 1 : Math.min(opts.jobs - tag + 1, Math.round(between(5, 30)));
      const tags = Array.from({ length: size }, (_, i) => tag + i);
      submissions.push({ key: crypto.randomUUID(), device: Math.floor(Math.random() * 3), tags, kind: size === 1 ? "single" : "batch", startedAt: 0, attempts: 0, accepted: false });
      tag += size;
    }
    const accepted: Accepted[] = [];
    const spec = (device: number, tag: number) => ({ device: devices[device]!.deviceId, module: digest, function: "tally", args: [tag, Math.round(between(20, 50))], timeoutMs: 5_000 });

    const submit = async (s: Submission) => {
      s.startedAt = Date.now();
      const headers = { "idempotency-key": s.key };
      try {
        if (s.kind === "single") {
          const res = await client.send<{ id: string }>("POST", "/v1/jobs", spec(s.device, s.tags[0]!), { headers, retryForMs: 120_000 });
          s.attempts = res.attempts;
          if (res.status !== 202 && res.status !== 200) throw new Error(`single answered ${res.status}: ${JSON.stringify(res.body)}`);
          accepted.push({ tag: s.tags[0]!, id: res.body.id, device: s.device, submittedAt: s.startedAt, acceptedAt: Date.now() });
        } else {
          // Sent with an Idempotency-Key, so a retry after a lost answer is safe where the route honours it.
          const res = await client.send<{ jobs: { id: string }[] }>("POST", "/v1/jobs/batch", { jobs: s.tags.map((t) => spec(s.device, t)) }, { headers, retryForMs: 120_000 });
          s.attempts = res.attempts;
          if (res.status !== 202) throw new Error(`batch answered ${res.status}: ${JSON.stringify(res.body)}`);
          const acceptedAt = Date.now();
          res.body.jobs.forEach((j, i) => accepted.push({ tag: s.tags[i]!, id: j.id, device: s.device, submittedAt: s.startedAt, acceptedAt }));
        }
        s.accepted = true;
      } catch (e) {
        opts.log(`faults: submission of tags ${s.tags[0]}..${s.tags.at(-1)} not accepted: ${String(e)}`);
      }
    };

    // ---- submission, with the faults running beside it -------------------------------
    const t0 = Date.now();
    const submitMs = opts.submitSeconds * 1000;
    let submitting = true;
    const inFlight: Promise<void>[] = [];
    const submitter = (async () => {
      for (const [i, s] of submissions.entries()) {
        const due = t0 + (i * submitMs) / submissions.length;
        if (due > Date.now()) await sleep(due - Date.now());
        inFlight.push(submit(s));
      }
      await Promise.all(inFlight);
      submitting = false;
    })();

    const restarts: Promise<void>[] = [];
    const killer = (async () => {
      while (submitting || faults.agentKills < opts.kills) {
        await sleep(between(...opts.killEveryMs));
        const up = devices.filter((d) => d.proc);
        if (up.length === 0) continue;
        const victim = up[Math.floor(Math.random() * up.length)]!;
        await victim.kill();
        opts.log(`faults: agent ${victim.index} SIGKILLed`);
        faults.agentKills++;
        faults.killsPerAgent[victim.index]!++;
        // Restart in the background: against a blackholed link it waits until the link is back.
        restarts.push(sleep(between(200, 1_500)).then(() => victim.restart()));
      }
    })();

    const crasher = (async () => {
      for (let i = 1; i <= opts.controlPlaneCrashes; i++) {
        const at = t0 + (i * submitMs) / (opts.controlPlaneCrashes + 1) + (i === 1 ? 0 : 1_500);
        await sleep(Math.max(0, at - Date.now()));
        const from = Date.now();
        await cp.crash();
        opts.log(`faults: control plane crashed (SIGKILL), ${Math.round((from - t0) / 1000)} s into submission`);
        await sleep(1_000);
        await cp.start();
        cpDown.push({ from, to: Date.now() });
        faults.controlPlaneCrashes++;
        faults.controlPlaneDownMs.push(Date.now() - from);
      }
    })();

    const linkFaults = (async () => {
      // a slow link for a while, then the long blackhole, then a reset of every connection
      await sleep(Math.max(0, t0 + submitMs * 0.15 - Date.now()));
      proxy.delay(80);
      await sleep(3_000);
      proxy.delay(0);
      faults.delayedMs = 3_000;
      await sleep(Math.max(0, t0 + submitMs * 0.42 - Date.now()));
      const from = Date.now();
      proxy.blackhole(true);
      opts.log(`faults: agent 0's link blackholed for ${opts.blackholeMs} ms`);
      await sleep(opts.blackholeMs);
      proxy.blackhole(false);
      blackholes.push({ from, to: Date.now() });
      faults.blackholeMs = Date.now() - from;
      await sleep(Math.max(0, t0 + submitMs * 0.85 - Date.now()));
      while (!devices[0]!.proc && submitting) await sleep(200); // cut the connections of a running agent
      faults.proxyCuts += proxy.cut();
    })();

    await Promise.all([submitter, killer, crasher, linkFaults]);
    await Promise.all(restarts);
    for (const d of devices) if (!d.proc) await d.restart();
    opts.log(`faults: submission done in ${Math.round((Date.now() - t0) / 1000)} s: ${accepted.length} jobs accepted; ${faults.agentKills} agent kills; draining`);

    // ---- drain: every accepted job to an end, within the bound --------------------------
    const drainStart = Date.now();
    const drainUntil = drainStart + opts.drainSeconds * 1000;
    const ends = new Map<string, JobEnd | null>();
    await eachLimited(accepted, 16, async (a) => {
      for (;;) {
        const wait = Math.max(0, Math.min(20, Math.floor((drainUntil - Date.now()) / 1000)));
        const res = await client.send<JobEnd>("GET", `/v1/jobs/${a.id}/result?wait=${wait}`, undefined, { timeoutMs: (wait + 10) * 1000, retryForMs: 30_000 });
        if (res.status === 404) return void ends.set(a.id, null);
        ends.set(a.id, res.body);
        if (res.status === 200 || Date.now() >= drainUntil) return;
      }
    });
    const drainSeconds = Math.round((Date.now() - drainStart) / 100) / 10;

    // Jobs the control plane holds that no answer named (a batch stored by an attempt whose answer was lost).
    const known = new Set(accepted.map((a) => a.id));
    const unanswered: JobEnd[] = [];
    for (const d of devices) {
      let cursor: string | null = null;
      do {
        const page: { status: number; body: { jobs: { id: string }[]; nextCursor: string | null } } = await client.send("GET", `/v1/jobs?device=${d.deviceId}&limit=500${cursor ? `&cursor=${cursor}` : ""}`);
        for (const j of page.body.jobs) if (!known.has(j.id)) unanswered.push((await client.send<JobEnd>("GET", `/v1/jobs/${j.id}`)).body);
        cursor = page.body.nextCursor;
      } while (cursor);
    }

    for (const d of devices) await d.stop();
    await cp.stop();
    faults.failedAgentStarts = devices.flatMap((d) => d.failedStarts.map((f) => `agent ${d.index} ${f}`));

    // ---- the figures ------------------------------------------------------------------
    const executions = devices.map((d) => d.executions(digest));
    const report: FaultReport = {
      submissions: {
        single: submissions.filter((s) => s.kind === "single").length,
        batch: submissions.filter((s) => s.kind === "batch").length,
        retried: submissions.filter((s) => s.attempts > 1).length,
        batchesRetried: submissions.filter((s) => s.kind === "batch" && s.attempts > 1).length,
        notAccepted: submissions.filter((s) => !s.accepted).length,
      },
      accepted: accepted.length,
      lost: 0,
      stuck: 0,
      states: {},
      failedForInfrastructure: {},
      notSucceeded: [],
      executionsPerJob: {},
      duplicates: { total: 0, whereAgentSurvived: 0, explained: {}, unexplained: [], ids: [] },
      unansweredJobs: { count: unanswered.length, executed: 0, ids: unanswered.map((j) => j.id) },
      redeliveries: 0,
      submitToEndMs: { p50: null, p99: null, max: null },
      acceptedToEndMs: { p50: null, p99: null },
      faults,
      client: {
        networkFailures: client.networkFailures,
        serverErrors: client.serverFaults.map((f) => {
          const requestId = f.requestId ?? (f.problem as { requestId?: string } | null)?.requestId ?? null;
          return { status: f.status, requestId, path: f.path, workerLog: workerLogLines(cp.logFile, requestId) };
        }),
      },
      drainSeconds,
      lostIds: [],
      stuckIds: [],
      workDir: opts.workDir,
    };
    const unansweredTags = new Map<string, number>();
    for (const j of unanswered) unansweredTags.set(`${j.args[0]}`, (unansweredTags.get(`${j.args[0]}`) ?? 0) + 1);
    const latencies: number[] = [];
    const sinceAccepted: number[] = [];
    for (const a of accepted) {
      const end = ends.get(a.id);
      if (!end) {
        report.lost++;
        report.lostIds.push(a.id);
        continue;
      }
      report.states[end.state] = (report.states[end.state] ?? 0) + 1;
      report.redeliveries += Math.max(0, end.attempts - 1);
      if (!["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELED", "EXPIRED", "REJECTED"].includes(end.state)) {
        report.stuck++;
        report.stuckIds.push(a.id);
        continue;
      }
      const finished = end.finishedAt ? Date.parse(end.finishedAt) : Date.now();
      latencies.push(finished - a.submittedAt);
      sinceAccepted.push(finished - a.acceptedAt);
      const runs = executions[a.device]!.get(a.tag) ?? 0;
      if (end.state !== "SUCCEEDED") {
        const why = `${end.state}/${end.error?.kind ?? "?"}`;
        report.failedForInfrastructure[why] = (report.failedForInfrastructure[why] ?? 0) + 1;
        report.notSucceeded.push(`${a.id} agent ${a.device} attempts ${end.attempts} runs ${runs} accepted ${new Date(a.acceptedAt).toISOString().slice(11, 23)} ended ${end.finishedAt?.slice(11, 23)}: ${end.error?.message ?? ""}`);
      }
      report.executionsPerJob[String(runs)] = (report.executionsPerJob[String(runs)] ?? 0) + 1;
      if (runs > 1) {
        report.duplicates.total++;
        const dev = devices[a.device]!;
        // The first cause that applies, in this order (a kill explains a re-run by itself: the result died with the agent).
        const agentKilled = dev.down.some((w) => overlaps(w, a.submittedAt, finished));
        const reason =
          unansweredTags.has(String(a.tag)) ? "a retried batch stored the job twice"
          : agentKilled ? "its agent was SIGKILLed while it held the job"
          : a.device === 0 && blackholes.some((w) => overlaps(w, a.submittedAt, finished)) ? "its agent survived; its link was blackholed while it held the job"
          : cpDown.some((w) => overlaps(w, a.submittedAt, finished)) ? "its agent survived; the control plane crashed while it held the job"
          : null;
        if (!agentKilled) report.duplicates.whereAgentSurvived++;
        report.duplicates.ids.push(`${a.id}:${runs}`);
        if (reason) report.duplicates.explained[reason] = (report.duplicates.explained[reason] ?? 0) + 1;
        else report.duplicates.unexplained.push(`${a.id} (tag ${a.tag}, ${runs} runs, attempts ${end.attempts})`);
      }
    }
    for (const j of unanswered) if ((executions.find((_, i) => devices[i]!.deviceId === j.id.slice(0, 17))?.get(j.args[0]!) ?? 0) > 0) report.unansweredJobs.executed++;
    latencies.sort((x, y) => x - y);
    report.submitToEndMs = { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? null };
    sinceAccepted.sort((x, y) => x - y);
    report.acceptedToEndMs = { p50: percentile(sinceAccepted, 50), p99: percentile(sinceAccepted, 99) };
    return report;
  } finally {
    for (const d of devices) await d.stop().catch(() => undefined);
    await proxy.close().catch(() => undefined);
    await cp.stop().catch(() => undefined);
  }
}
