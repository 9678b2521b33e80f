/**
 * A control plane that can be crashed: test/helpers/control-plane-main.mjs in its own process
 * group. `crash()` SIGKILLs the whole group (Node and workerd: nothing is flushed or disposed),
 * `start()` brings it back on the same port and persisted SQLite state. The Worker's structured
 * logs (one JSON object a line, with request ids) are appended to `logFile` across restarts.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdtempSync, type WriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { ADMIN_TOKEN, DEVICE_CREDENTIAL_KEY, E2E_VARS } from "./control-plane.js";

const MAIN = resolve("test/helpers/control-plane-main.mjs");

export class CrashableControlPlane {
  private proc: ChildProcess | null = null;
  private port = 0;
  private readonly log: WriteStream;
  url = "";
  readonly adminToken = ADMIN_TOKEN;

  constructor(
    readonly persistDir: string = mkdtempSync(join(tmpdir(), "wv-state-")),
    readonly logFile: string = join(persistDir, "..", `worker-${Date.now()}.log`),
    private readonly vars: Record<string, string> = {},
  ) {
    this.log = createWriteStream(logFile, { flags: "a" });
  }

  get running() {
    return this.proc !== null;
  }

  /** Starts (or restarts) on the first start's port; resolves once it serves. */
  async start(timeoutMs = 60_000): Promise<string> {
    if (this.proc) throw new Error("the control plane is already running");
    const config = { persistDir: this.persistDir, port: this.port, vars: { ADMIN_TOKEN, DEVICE_CREDENTIAL_KEY, ...E2E_VARS, ...this.vars } };
    const env = { ...process.env, CI: "true", WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME ?? mkdtempSync(join(tmpdir(), "wv-xdg-")) };
    const proc = spawn(process.execPath, [MAIN, JSON.stringify(config)], { detached: true, stdio: ["ignore", "pipe", "pipe"], env });
    this.proc = proc;
    this.log.write(JSON.stringify({ suite: "control plane starting", pid: proc.pid, at: new Date().toISOString() }) + "\n");
    const url = await new Promise<string>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`control plane did not start in ${timeoutMs} ms (log: ${this.logFile})`)), timeoutMs);
      createInterface({ input: proc.stdout! }).on("line", (line) => {
        this.log.write(line + "\n");
        if (line.startsWith('{"url"')) {
          clearTimeout(timer);
          res((JSON.parse(line) as { url: string }).url);
        }
      });
      createInterface({ input: proc.stderr! }).on("line", (line) => this.log.write(line + "\n"));
      proc.on("exit", (code, signal) => {
        clearTimeout(timer);
        rej(new Error(`control plane exited (${code ?? signal}) before serving (log: ${this.logFile})`));
      });
    });
    this.url = url;
    this.port = Number(new URL(url).port);
    return url;
  }

  /** SIGKILL to the process group: the control plane dies mid-request, as a machine losing power would. */
  async crash(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    const drained = this.outputDrained(proc);
    try {
      process.kill(-proc.pid!, "SIGKILL");
    } catch {
      // already gone
    }
    await drained;
    if (!this.log.writableEnded) this.log.write(JSON.stringify({ suite: "control plane crashed (SIGKILL)", at: new Date().toISOString() }) + "\n");
  }

  /** Resolves when the process has exited and everything it wrote has reached the log. */
  private outputDrained(proc: ChildProcess): Promise<void> {
    const closed = (s: NodeJS.ReadableStream | null) => new Promise<void>((r) => (!s || (s as { readableEnded?: boolean }).readableEnded ? r() : s.once("close", () => r())));
    const exited = new Promise<void>((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once("exit", () => r())));
    return Promise.all([exited, closed(proc.stdout), closed(proc.stderr)]).then(() => undefined);
  }

  /** Ends it gracefully (its logs flushed), then closes the log file; idempotent. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc) {
      this.proc = null;
      const drained = this.outputDrained(proc);
      proc.kill("SIGTERM");
      const killer = setTimeout(() => {
        try {
          process.kill(-proc.pid!, "SIGKILL");
        } catch {
          // gone
        }
      }, 10_000);
      await drained;
      clearTimeout(killer);
    }
    if (!this.log.writableEnded) await new Promise<void>((r) => this.log.end(() => r()));
  }
}
