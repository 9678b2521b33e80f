/** The real agent as users run it: `node dist/device-agent/cli.js agent …` in a child process. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const CLI = resolve("dist/device-agent/cli.js");

export interface AgentProcess {
  proc: ChildProcess;
  dataDir: string;
  deviceId: string;
  logs: Record<string, unknown>[];
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startAgent(opts: { server: string; token?: string; dataDir?: string; args?: string[]; command?: string[]; cwd?: string; startTimeoutMs?: number; env?: Record<string, string> }): Promise<AgentProcess> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "wv-agent-"));
  const base = opts.command ?? [process.execPath, CLI];
  const args = [...base.slice(1), "agent", "--server", opts.server, "--data-dir", dataDir, "--heartbeat-interval", "1", "--log-level", "debug", ...(opts.token ? ["--token", opts.token] : []), ...(opts.args ?? [])];
  const proc = spawn(base[0]!, args, { stdio: ["ignore", "pipe", "pipe"], cwd: opts.cwd, env: { ...process.env, WASMVISOR_TOKEN: "", ...opts.env } });
  const logs: Record<string, unknown>[] = [];
  const listeners = new Set<() => void>();
  const stderr: string[] = [];
  createInterface({ input: proc.stdout! }).on("line", (line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      logs.push({ raw: line });
    }
    for (const l of listeners) l();
  });
  createInterface({ input: proc.stderr! }).on("line", (line) => stderr.push(line));
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));

  const waitForLog: AgentProcess["waitForLog"] = (pred, timeoutMs = 30_000) =>
    new Promise((res, rej) => {
      const check = () => {
        const hit = logs.find(pred);
        if (hit) {
          listeners.delete(check);
          clearTimeout(timer);
          res(hit);
        }
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        rej(new Error(`agent log not seen in ${timeoutMs} ms; logs: ${JSON.stringify(logs.slice(-10))}; stderr: ${stderr.join("\n")}`));
      }, timeoutMs);
      listeners.add(check);
      void exited.then(() => setTimeout(check, 10));
      check();
    });

  const started = await waitForLog((l) => l.msg === "agent started" || l.level === "error", opts.startTimeoutMs).catch((e: unknown) => e as Error);
  if (started instanceof Error || started.msg !== "agent started") {
    // Never leave a half-started agent behind: a retry on the same data dir would make two agents of one device.
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await exited;
    throw started instanceof Error ? started : new Error(`agent failed to start: ${JSON.stringify(logs)} ${stderr.join("\n")}`);
  }
  const deviceId = (JSON.parse(readFileSync(join(dataDir, "credential.json"), "utf8")) as { deviceId: string }).deviceId;
  return {
    proc, dataDir, deviceId, logs, waitForLog,
    kill: async (signal = "SIGTERM") => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}
