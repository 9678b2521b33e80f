/** The `wasmvisor` commands. `wasmvisor agent` runs the device agent. */
import { readFileSync } from "node:fs";
import os from "node:os";
import { resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { Agent } from "./agent.js";
import { agentFile } from "./agent-files.js";
import { agentLog, setAgentLogLevel, type Level } from "./agent-log.js";
import type { TransportMode } from "./transport.js";
import { readDeviceConfig } from "./machine.js";
import { operatorCommands } from "./cli/operator.js";
import { serviceCommands } from "./cli/services.js";
import { deploymentCommands } from "./cli/deploy.js";
import { scheduleCommands } from "./cli/schedules.js";
import { observeCommands } from "./cli/observe.js";

const pkg = JSON.parse(readFileSync(agentFile("../../package.json"), "utf8")) as { version: string };

const positiveInt = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive whole number");
  return n;
};

const program = new Command("wasmvisor").description("Supervise WebAssembly on edge and IoT devices").version(pkg.version);
// Usage errors exit 2 (see cli/output.ts); set before subcommands are added so they inherit it.
program.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program
  .command("agent")
  .description("run the device agent: register, long-poll for jobs, run them with WASI, report results and health")
  .addOption(new Option("--server <url>", "control plane URL").env("WASMVISOR_SERVER").makeOptionMandatory())
  .addOption(new Option("--token <token>", "register key (only needed the first time)").env("WASMVISOR_TOKEN"))
  .addOption(new Option("--data-dir <dir>", "where the credential, modules, sandboxes and outbox live").env("WASMVISOR_DATA_DIR").default(".wasmvisor/agent"))
  .option("--name <name>", "device name shown in listings")
  .option("--config <file>", "JSON file with the device's name and capabilities (cameras, sensors, labels)")
  .option("--pool-size <n>", "worker threads running jobs", positiveInt, Math.max(1, os.availableParallelism()))
  .option("--max-memory-mb <n>", "memory cap per module instance", positiveInt, 256)
  .option("--max-output-kb <n>", "captured stdout/stderr per stream per job", positiveInt, 64)
  .option("--heartbeat-interval <seconds>", "seconds between health reports", positiveInt, 10)
  .option("--poll-wait <seconds>", "long-poll wait", positiveInt, 25)
  .addOption(new Option("--transport <mode>", "ws: WebSocket push; poll: long-poll; auto: push, falling back to long-poll").choices(["auto", "ws", "poll"]).default("auto"))
  .option("--prefetch <n>", "jobs held at once, running or waiting for a thread (default: 4 per thread)", positiveInt)
  .option("--max-instances <n>", "deployment instances kept between calls, one thread each (least recently used ends first)", positiveInt, 8)
  .option("--outbox-quota-mb <n>", "disk kept for results, health samples and log lines while the control plane is away (past it: oldest health samples dropped, then log lines; results never)", positiveInt, 16)
  .addOption(new Option("--service-env-allow <names>", "comma-separated names of this agent's environment variables a service's envFrom may pass to its guest (default: none; other names are dropped)").env("WASMVISOR_SERVICE_ENV_ALLOW"))
  .addOption(new Option("--log-level <level>", "debug shows every job; info (default) shows failures and lifecycle").choices(["debug", "info", "warn", "error"]).default("info"))
  .action(async (o: Record<string, string | number | undefined>) => {
    setAgentLogLevel(o.logLevel as Level);
    const device = readDeviceConfig(o.config as string | undefined);
    if (o.name) device.name = String(o.name);
    const agent = new Agent({
      server: String(o.server),
      registerToken: o.token as string | undefined,
      dataDir: resolve(String(o.dataDir)),
      poolSize: Number(o.poolSize),
      maxMemoryMb: Number(o.maxMemoryMb),
      maxOutputBytes: Number(o.maxOutputKb) * 1024,
      heartbeatIntervalMs: Number(o.heartbeatInterval) * 1000,
      pollWaitSeconds: Math.min(30, Number(o.pollWait)),
      transport: o.transport as TransportMode,
      prefetch: o.prefetch ? Number(o.prefetch) : Number(o.poolSize) * 4,
      maxInstances: Number(o.maxInstances),
      outboxQuotaBytes: Number(o.outboxQuotaMb) * 1024 * 1024,
      serviceEnvAllow: String(o.serviceEnvAllow ?? "").split(",").map((n) => n.trim()).filter(Boolean),
      device,
      version: pkg.version,
    });
    let stopping = false;
    const shutdown = (signal: string) => {
      if (stopping) process.exit(130);
      stopping = true;
      agentLog("info", "shutting down", { signal });
      void agent.stop().then(() => process.exit(process.exitCode ?? 0));
    };
    process.on("SIGINT", () => shutdown("SIGINT"));
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    try {
      await agent.start();
    } catch (e) {
      agentLog("error", "agent could not start", { error: String(e) });
      process.exit(1);
    }
  });

operatorCommands(program);
serviceCommands(program);
deploymentCommands(program);
scheduleCommands(program);
observeCommands(program);

await program.parseAsync();
