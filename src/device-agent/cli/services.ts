/** `wasmvisor services ...`: the process supervisor's verbs for services on devices (docs/services.md). */
import { Command } from "commander";
import type { LogLine, ServiceSpecInput, ServiceView } from "../../sdk/index.js";
import { action, client, withConnection } from "./operator.js";
import { parseArg, print, readJsonFile, table, UsageError, type Output } from "./output.js";

const collect = (v: string, prev: string[]) => [...prev, v];
const num = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`not a whole number of milliseconds or a count: ${v}`);
  return n;
};

const row = (s: ServiceView) => ({
  name: s.name,
  status: s.status,
  desired: s.desired,
  restarts: `${s.restarts}/${s.spec.restart.maxRestarts}`,
  exitCode: s.exitCode,
  cpu: s.pid ? `${s.cpuPercent.toFixed(1)}%` : null,
  rss: s.pid ? `${(s.rssBytes / 2 ** 20).toFixed(1)} MiB` : null,
  reason: s.reason,
});
const COLUMNS = ["name", "status", "desired", "restarts", "exitCode", "cpu", "rss", "reason"];

function showService(out: Output, s: ServiceView) {
  print(out, s, () =>
    [
      table([row(s)], COLUMNS),
      `pid: ${s.pid ?? "-"}, started: ${s.startedAt ?? "-"}${s.restartAt ? `, next start: ${s.restartAt}` : ""}${s.startAt ? `, pending start: ${s.startAt}` : ""}`,
      ...(s.lastError ? [`last error: ${s.lastError}`] : []),
      `reported: ${s.reportedAt ?? "never (the agent has not said yet)"}`,
    ].join("\n"),
    () => [s.name],
  );
}

const fmt = (out: Output) => (l: LogLine) => (out.json ? JSON.stringify(l) : `${new Date(l.at).toISOString()} ${l.stream === "stderr" ? "ERR" : "OUT"} ${l.line}`);

export function serviceCommands(program: Command) {
  const services = program.command("services").description("long-running modules on devices: create, open, suspend, resume, kill, rm, cancel, status, ls, logs");

  services
    .command("create")
    .description("create a service: wasmvisor services create <device> <name> <module sha256> [args...] (or --spec file.json)")
    .argument("<device>")
    .argument("[name]")
    .argument("[module]")
    .argument("[args...]", "the command's argv (entry _start) or the function's arguments")
    .option("--spec <file>", "a ServiceSpec in JSON (examples/services/); the other options override it")
    .option("--entry <export>", "_start (a WASI command, the default) or an exported function")
    .option("--env <NAME=value>", "an environment variable for the guest (repeatable)", collect, [])
    .option("--env-from <NAME>", "pass this variable of the agent's environment through, if that agent allows it (its --service-env-allow; repeatable)", collect, [])
    .option("--restart <mode>", "always, on-failure (default) or never")
    .option("--max-restarts <n>", "restarts allowed within the window", num)
    .option("--window-ms <ms>", "the budget's window", num)
    .option("--initial-delay-ms <ms>", "first restart delay (doubles each time)", num)
    .option("--max-delay-ms <ms>", "restart delay cap", num)
    .option("--reset-after-ms <ms>", "a run this long forgets earlier failures", num)
    .option("--rearm-after-ms <ms|never>", "a CRASHED service re-arms after this cool-off (never: only a reset)")
    .option("--stopped", "create it suspended (resume starts it)")
    .option("--start-after-ms <ms>", "start later (PENDING until then)", num)
    .option("--start-at <iso>", "start at this time (PENDING until then)")
    .action(action(async (device: string, name: string | undefined, module: string | undefined, args: string[], o: Record<string, any>, cmd: Command) => {
      const { api, out } = await client(cmd);
      const spec: Record<string, any> = o.spec ? readJsonFile<Record<string, unknown>>(o.spec, "service spec") : {};
      if (name) spec.name = name;
      if (module) spec.module = module;
      if (args.length) spec.args = args.map(parseArg);
      if (o.entry) spec.entry = o.entry;
      if (o.env.length) spec.env = { ...spec.env, ...Object.fromEntries(o.env.map((kv: string) => [kv.split("=")[0], kv.slice(kv.indexOf("=") + 1)])) };
      if (o.envFrom.length) spec.envFrom = o.envFrom;
      const restart: Record<string, unknown> = { ...spec.restart };
      if (o.restart) restart.mode = o.restart;
      for (const k of ["maxRestarts", "windowMs", "initialDelayMs", "maxDelayMs", "resetAfterMs"]) if (o[k] !== undefined) restart[k] = o[k];
      if (o.rearmAfterMs !== undefined) restart.rearmAfterMs = o.rearmAfterMs === "never" ? null : num(o.rearmAfterMs);
      if (Object.keys(restart).length) spec.restart = restart;
      if (o.stopped) spec.startStopped = true;
      if (o.startAfterMs !== undefined) spec.startAfterMs = o.startAfterMs;
      if (o.startAt) spec.startAt = o.startAt;
      if (!spec.name || !spec.module) throw new UsageError("give a name and a module (or a --spec file that has them)");
      showService(out, await api.createService(device, spec as ServiceSpecInput));
    }));

  services
    .command("ls")
    .argument("<device>")
    .description("the device's services with their status")
    .action(action(async (device: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      const all = await api.listServices(device);
      print(out, all, () => table(all.map(row), COLUMNS), () => all.map((s) => s.name));
    }));

  services
    .command("status")
    .argument("<device>")
    .argument("<name>")
    .description("one service: status, reason, exit code, restarts, last error, CPU and memory")
    .action(action(async (device: string, name: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      showService(out, await api.getService(device, name));
    }));

  const verbs = {
    suspend: "freeze the service's process (no CPU) until resumed",
    resume: "continue a suspended service where it stopped",
    kill: "stop the service for good (a pending start is canceled)",
    cancel: "cancel a pending (delayed) start",
    reset: "reset the restart budget (a CRASHED service starts again)",
  } as const;
  for (const [verb, description] of Object.entries(verbs) as [keyof typeof verbs, string][]) {
    services
      .command(verb)
      .argument("<device>")
      .argument("<name>")
      .description(description)
      .action(action(async (device: string, name: string, _o: unknown, cmd: Command) => {
        const { api, out } = await client(cmd);
        showService(out, await api.serviceAction(device, name, verb));
      }));
  }

  services
    .command("rm")
    .argument("<device>")
    .argument("<names...>")
    .description("remove services whatever their status (their processes end, their files go)")
    .action(action(async (device: string, names: string[], _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      const r = await api.removeServices(device, names);
      print(out, r, () => [`removed: ${r.removed.join(", ") || "-"}`, ...(r.absent.length ? [`not found: ${r.absent.join(", ")}`] : [])].join("\n"), () => r.removed);
      if (r.absent.length) process.exitCode = 3;
    }));

  const logs = async (device: string, name: string, follow: boolean, cmd: Command) => {
    const { api, out } = await client(cmd);
    const lines = await api.serviceLogs(device, name, { limit: 200 });
    for (const l of lines) process.stdout.write(fmt(out)(l) + "\n");
    if (!follow) return;
    for await (const l of api.followServiceLogs(device, name, { after: lines.at(-1)?.seq ?? 0, seconds: 3600 })) process.stdout.write(fmt(out)(l) + "\n");
  };

  services
    .command("logs")
    .argument("<device>")
    .argument("<name>")
    .option("-f, --follow", "keep printing new lines")
    .description("the service's recent output (a bounded ring), line by line with times")
    .action(action(async (device: string, name: string, o: { follow?: boolean }, cmd: Command) => logs(device, name, Boolean(o.follow), cmd)));

  services
    .command("open")
    .argument("<device>")
    .argument("<name>")
    .option("--no-follow", "print the status and recent output, then return")
    .description("attach to a service: its status (an instance a restarted agent adopted says so, with its pid), then its output as it comes")
    .action(action(async (device: string, name: string, o: { follow: boolean }, cmd: Command) => {
      const { api, out } = await client(cmd);
      showService(out, await api.getService(device, name));
      await logs(device, name, o.follow, cmd);
    }));

  for (const leaf of services.commands) withConnection(leaf);
}
