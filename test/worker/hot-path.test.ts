/**
 * What one job costs the device object (issue 14, lever 3): SQLite statements and rows per job
 * on the push path (submit and wait, pushed at once, started, result), counted by wrapping the
 * object's own `sql.exec`, including what the index feed and the event outbox do for it.
 */
import { describe, expect, it } from "vitest";
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { ADMIN, health, registerDevice, sleep, uploadModule } from "./helpers.js";

async function connect(credential: string) {
  const res = await SELF.fetch("https://wasmvisor.test/v1/agent/ws", { headers: { upgrade: "websocket", authorization: `Bearer ${credential}` } });
  expect(res.status).toBe(101);
  const ws = res.webSocket!;
  ws.accept();
  const inbox: any[] = [];
  let wake: (() => void) | null = null;
  ws.addEventListener("message", (e) => {
    inbox.push(JSON.parse(e.data as string));
    wake?.();
  });
  const next = async (pred: (m: any) => boolean, timeoutMs = 10_000) => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = inbox.findIndex(pred);
      if (i >= 0) return inbox.splice(i, 1)[0];
      if (Date.now() > end) throw new Error(`no matching message; inbox: ${JSON.stringify(inbox)}`);
      await Promise.race([new Promise<void>((r) => (wake = r)), sleep(50)]);
    }
  };
  return { ws, next, send: (m: unknown) => ws.send(JSON.stringify(m)) };
}

const result = (value: number) => ({ value, exitCode: null, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false, durationMs: 1 });

type Counter = { statements: number; cursors: { rowsRead: number; rowsWritten: number }[]; texts: Map<string, number> };

describe("the cost of one job in the device object", () => {
  it("counts statements and rows per job on the push path", async () => {
    const { deviceId, credential } = await registerDevice();
    const digest = await uploadModule("math");
    const agent = await connect(credential);
    agent.send({ t: "credit", free: 1 });
    agent.send({ t: "heartbeat", id: 1, health: health(), runningJobs: [] });
    await agent.next((m) => m.t === "heartbeat-ack");
    const device = env.DEVICES.get(env.DEVICES.idFromName(deviceId));
    const counter: Counter = { statements: 0, cursors: [], texts: new Map() };
    await runInDurableObject(device, (_obj, state) => {
      const sql = state.storage.sql;
      const exec = sql.exec.bind(sql);
      (sql as { exec: unknown }).exec = (text: string, ...params: unknown[]) => {
        counter.statements++;
        const key = text.replace(/\s+/g, " ").slice(0, 60);
        counter.texts.set(key, (counter.texts.get(key) ?? 0) + 1);
        const cursor = exec(text, ...(params as SqlStorageValue[]));
        counter.cursors.push(cursor);
        return cursor;
      };
    });
    const JOBS = 20;
    let seq = 100;
    for (let i = 0; i < JOBS; i++) {
      const answer = SELF.fetch(`https://wasmvisor.test/v1/jobs?wait=10`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
        body: JSON.stringify({ device: deviceId, module: digest, function: "add32", args: [i, 1] }),
      });
      const { jobs } = await agent.next((m) => m.t === "jobs");
      const lease = { jobId: jobs[0].jobId, leaseToken: jobs[0].leaseToken };
      agent.send({ t: "started", started: [lease], held: [] });
      agent.send({ t: "results", id: seq++, free: 1, results: [{ ...lease, outcome: "succeeded", result: result(i + 1), error: null, logs: [] }] });
      const body = (await (await answer).json()) as { state: string; result: { value: number } };
      expect(body).toMatchObject({ state: "SUCCEEDED", result: { value: i + 1 } });
      await agent.next((m) => m.t === "reported");
    }
    // Let the index feed and the event outbox send what these jobs changed.
    let last = -1;
    while (counter.statements !== last) {
      last = counter.statements;
      await sleep(150);
    }
    const rowsRead = counter.cursors.reduce((n, c) => n + c.rowsRead, 0);
    const rowsWritten = counter.cursors.reduce((n, c) => n + c.rowsWritten, 0);
    const perJob = { statements: counter.statements / JOBS, rowsRead: rowsRead / JOBS, rowsWritten: rowsWritten / JOBS };
    console.log(`per job: ${JSON.stringify(perJob)}\n${[...counter.texts].sort((a, b) => b[1] - a[1]).map(([t, n]) => `${n}\t${t}`).join("\n")}`);
    // 36.45 statements, 50.45 rows read per job before issue 14 (lever 3); 20.35 and 30.5 after. Alarm sweeps (the short test ack window) add noise.
    expect(perJob.statements).toBeLessThan(28);
    agent.ws.close();
  });
});
