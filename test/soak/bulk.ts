/**
 * The bulk soak (issue 9, hole #16): many fibo jobs to one device in batches of 1,000,
 * `batchesPerRound` batches a round, then wait for the round's last job, repeat. Every answer
 * that is not 202 is kept with its request id and the Worker's log lines for that id.
 */
import { readFileSync } from "node:fs";
import { CrashableControlPlane } from "../helpers/control-plane-process.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { SoakClient } from "../helpers/soak-client.js";
import { workerLogLines } from "./report.js";

export interface BulkOptions {
  jobs: number;
  batchSize: number;
  batchesPerRound: number;
  workDir: string;
  log: (line: string) => void;
}

export interface BulkReport {
  jobs: number;
  accepted: number;
  batches: number;
  refused: { status: number; requestId: string | null; problem: unknown; workerLog: string[] }[];
  lastJobStates: Record<string, number>;
  /** the device's queue once the last round ended */
  finalQueue: { queued: number; running: number } | null;
  seconds: number;
  jobsPerSecond: number;
  workerLogFile: string;
}

type JobRefs = { jobs: { id: string }[] };

export async function runBulkSoak(opts: BulkOptions): Promise<BulkReport> {
  const cp = new CrashableControlPlane(`${opts.workDir}/bulk-state`, `${opts.workDir}/bulk-worker.log`);
  let agent: AgentProcess | undefined;
  try {
    await cp.start();
    const client = new SoakClient(() => cp.url, cp.adminToken);
    const fibo = (await (await fetch(`${cp.url}/v1/modules`, { method: "POST", headers: { authorization: `Bearer ${cp.adminToken}`, "content-type": "application/wasm" }, body: readFileSync("examples/wasm/fibo.wasm") })).json()) as { digest: string };
    const key = (await client.send<{ key: string }>("POST", "/v1/keys", { role: "register" })).body.key;
    agent = await startAgent({ server: cp.url, token: key, dataDir: `${opts.workDir}/bulk-agent`, args: ["--log-level", "info"] });
    const device = agent.deviceId;
    const report: BulkReport = { jobs: opts.jobs, accepted: 0, batches: 0, refused: [], lastJobStates: {}, finalQueue: null, seconds: 0, jobsPerSecond: 0, workerLogFile: cp.logFile };
    const started = Date.now();
    let sent = 0;
    while (sent < opts.jobs) {
      let last: string | undefined;
      for (let b = 0; b < opts.batchesPerRound && sent < opts.jobs; b++) {
        const n = Math.min(opts.batchSize, opts.jobs - sent);
        const jobs = Array.from({ length: n }, (_, i) => ({ device, module: fibo.digest, function: "fibo", args: [10 + ((sent + i) % 10)] }));
        sent += n;
        report.batches++;
        // No retry: the point is to see every answer the control plane gives a plain client.
        const res = await fetch(`${cp.url}/v1/jobs/batch`, { method: "POST", headers: { authorization: `Bearer ${cp.adminToken}`, "content-type": "application/json" }, body: JSON.stringify({ jobs }), signal: AbortSignal.timeout(60_000) });
        const body = (await res.json()) as JobRefs;
        if (res.status !== 202) {
          // The problem body names the request id (error answers do not carry the header).
          const requestId = res.headers.get("x-request-id") ?? (body as { requestId?: string }).requestId ?? null;
          report.refused.push({ status: res.status, requestId, problem: body, workerLog: [] });
          opts.log(`bulk: batch ${report.batches} answered ${res.status} (request id ${requestId}): ${JSON.stringify(body)}`);
          continue;
        }
        report.accepted += n;
        last = body.jobs[body.jobs.length - 1]!.id;
      }
      if (last) {
        const end = (await client.send<{ state: string }>("GET", `/v1/jobs/${last}/result?wait=60`, undefined, { timeoutMs: 70_000 })).body;
        report.lastJobStates[end.state] = (report.lastJobStates[end.state] ?? 0) + 1;
      }
      if (report.batches % (opts.batchesPerRound * 4) === 0) opts.log(`bulk: ${sent}/${opts.jobs} sent, ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
    report.seconds = Math.round((Date.now() - started) / 100) / 10;
    // Everything queued has run: the device's queue is empty (bounded wait).
    for (const until = Date.now() + 60_000; ; await new Promise((r) => setTimeout(r, 500))) {
      report.finalQueue = (await client.send<{ queue: { queued: number; running: number } }>("GET", `/v1/devices/${device}`)).body.queue;
      if ((report.finalQueue.queued === 0 && report.finalQueue.running === 0) || Date.now() > until) break;
    }
    report.jobsPerSecond = Math.round(report.accepted / report.seconds);
    await cp.stop();
    for (const r of report.refused) r.workerLog = workerLogLines(cp.logFile, r.requestId);
    return report;
  } finally {
    await agent?.kill("SIGKILL");
    await cp.stop();
  }
}
