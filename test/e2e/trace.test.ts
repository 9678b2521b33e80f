/**
 * One job reads as one trace: a job submitted with a W3C traceparent carries its trace id
 * to the real agent (in its JSON log lines, and back with the result), into the job's view
 * and into the audit entry of the submission.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { compileAll } from "../helpers/wat.js";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const PARENT = `00-${TRACE_ID}-b7ad6b7169203331-01`;

describe("a job's trace, end to end", () => {
  let cp: ControlPlane;
  let agent: AgentProcess;
  let digest: string;

  beforeAll(async () => {
    cp = await startControlPlane();
    const key = await cp.admin.createKey("register", "trace");
    agent = await startAgent({ server: cp.url, token: key.key, args: ["--pool-size", "1", "--name", "trace-device"] });
    digest = (await cp.admin.uploadModule((await compileAll()).math)).digest;
  });

  afterAll(async () => {
    await agent?.kill();
    await cp?.stop();
  });

  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${cp.url}${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json", ...init.headers }, signal: AbortSignal.timeout(30_000) });

  it("shows the submitting request's trace id in the agent's lines, the job view and the audit entry", async () => {
    const res = await api("/v1/jobs", { method: "POST", headers: { traceparent: PARENT }, body: JSON.stringify({ device: agent.deviceId, module: digest, function: "add32", args: [2, 3] }) });
    expect(res.status).toBeLessThan(300);
    // the answer continues the caller's trace with a span of its own
    const answered = res.headers.get("traceparent")!;
    expect(answered).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`));
    expect(answered).not.toBe(PARENT);
    const jobId = ((await res.json()) as { id: string }).id;

    const finished = await agent.waitForLog((l) => l.msg === "job finished" && l.jobId === jobId, 45_000);
    expect(finished.trace_id).toBe(TRACE_ID);
    const started = agent.logs.find((l) => l.msg === "job started" && l.jobId === jobId);
    expect(started?.trace_id).toBe(TRACE_ID);

    const job = (await cp.admin.waitForJob(jobId, { timeoutSeconds: 45 })) as { state: string; traceId?: string | null };
    expect(job.state).toBe("SUCCEEDED");
    expect(job.traceId).toBe(TRACE_ID);

    let entries: { operation: string; target: string; traceId: string | null; outcome: number }[] = [];
    for (let i = 0; i < 100 && entries.length === 0; i++) {
      entries = ((await (await api(`/v1/audit?operation=postJobs&target=${jobId}`)).json()) as { entries: typeof entries }).entries;
      if (entries.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ operation: "postJobs", target: jobId, traceId: TRACE_ID, outcome: res.status });
  });

  it("starts a new trace for a request without a valid traceparent, and the job keeps it", async () => {
    const res = await api("/v1/jobs", { method: "POST", headers: { traceparent: "00-not-a-trace-01" }, body: JSON.stringify({ device: agent.deviceId, module: digest, function: "add32", args: [1, 1] }) });
    const trace = res.headers.get("traceparent")!.split("-")[1]!;
    expect(trace).toMatch(/^[0-9a-f]{32}$/);
    const jobId = ((await res.json()) as { id: string }).id;
    const finished = await agent.waitForLog((l) => l.msg === "job finished" && l.jobId === jobId, 45_000);
    expect(finished.trace_id).toBe(trace);
    expect(((await cp.admin.waitForJob(jobId, { timeoutSeconds: 45 })) as { traceId?: string }).traceId).toBe(trace);
  });
});
