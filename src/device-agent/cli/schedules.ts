/** `wasmvisor schedules create|ls|show|pause|resume|rm`: cron and one-shot starts of jobs on a device (docs/schedules.md). */
import { Command, InvalidArgumentError, Option } from "commander";
import type { ScheduleCreateInput, ScheduleView } from "../../sdk/index.js";
import { action, client, withConnection } from "./operator.js";
import { parseArg, print, readJsonFile, table, type Output } from "./output.js";

const row = (s: ScheduleView) => ({
  id: s.id,
  name: s.name,
  status: s.status,
  timing: "cron" in s.timing ? `${s.timing.cron} (${s.timing.timezone})` : `at ${s.timing.at}`,
  missed: `${s.missed}: ${s.missedCount}`,
  nextAt: s.nextAt,
  lastJob: s.lastFired?.job ?? null,
});
const COLUMNS = ["id", "name", "status", "timing", "missed", "nextAt", "lastJob"];

function show(out: Output, s: ScheduleView) {
  print(out, s, () => table([row(s)], COLUMNS), () => [s.id]);
}

const positive = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive whole number");
  return n;
};

export function scheduleCommands(program: Command) {
  const schedules = program.command("schedules").description("run jobs on a device on a cron schedule or once later; each occurrence runs at most once");
  schedules
    .command("create")
    .description("schedule a job: wasmvisor schedules create <device> --cron '*/5 * * * *' <module sha256> <function> [args...], or --file schedule.json")
    .argument("<device>")
    .argument("[module]")
    .argument("[function]")
    .argument("[args...]", "the function's arguments")
    .option("--file <schedule.json>", "the whole schedule as JSON (the body of POST /v1/devices/{id}/schedules)")
    .option("--cron <expr>", "cron expression: 5 fields, or 6 with seconds first")
    .option("--tz <zone>", "IANA time zone of the expression", "UTC")
    .option("--at <iso>", "run once at this time")
    .option("--after <seconds>", "run once this many seconds from now", positive)
    .addOption(new Option("--missed <policy>", "occurrences missed while the control plane or the device was away: skip them, or run once on catch-up").choices(["skip", "catch-up-once"]))
    .option("--grace-ms <ms>", "how late an occurrence may still start (skip)", positive)
    .option("--name <name>")
    .option("--paused", "create it paused")
    .action(
      action(async (device: string, module: string | undefined, fn: string | undefined, args: string[], o: Record<string, unknown>, cmd: Command) => {
        const { api, out } = await client(cmd);
        let body: ScheduleCreateInput;
        if (o.file) {
          body = readJsonFile<ScheduleCreateInput>(String(o.file), "schedule");
        } else {
          if (!module || !fn) throw new InvalidArgumentError("give <module> <function> [args...] or --file");
          const timing = o.cron ? { cron: String(o.cron), timezone: String(o.tz) } : o.at ? { at: String(o.at) } : o.after ? { afterMs: Number(o.after) * 1000 } : null;
          if (!timing) throw new InvalidArgumentError("give --cron, --at or --after");
          body = { timing, target: { kind: "job", submission: { module, function: fn, args: args.map(parseArg) } } };
        }
        body = {
          ...body,
          ...(o.missed ? { missed: o.missed as "skip" | "catch-up-once" } : {}),
          ...(o.graceMs ? { graceMs: Number(o.graceMs) } : {}),
          ...(o.name ? { name: String(o.name) } : {}),
          ...(o.paused ? { paused: true } : {}),
        };
        show(out, await api.createSchedule(device, body));
      }),
    );
  schedules
    .command("ls")
    .argument("<device>")
    .description("the device's schedules with their next occurrence, last job and missed count")
    .action(action(async (device: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      const all = await api.listSchedules(device);
      print(out, all, () => table(all.map(row), COLUMNS), () => all.map((s) => s.id));
    }));
  schedules
    .command("show")
    .argument("<device>")
    .argument("<id>")
    .description("one schedule")
    .action(action(async (device: string, id: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      show(out, await api.getSchedule(device, id));
    }));
  schedules
    .command("pause")
    .argument("<device>")
    .argument("<id>")
    .description("pause a schedule (nothing fires until resumed)")
    .action(action(async (device: string, id: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      show(out, await api.pauseSchedule(device, id));
    }));
  schedules
    .command("resume")
    .argument("<device>")
    .argument("<id>")
    .description("resume a paused schedule from now on")
    .action(action(async (device: string, id: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      show(out, await api.resumeSchedule(device, id));
    }));
  schedules
    .command("rm")
    .argument("<device>")
    .argument("<id>")
    .description("delete a schedule (jobs it started stay)")
    .action(action(async (device: string, id: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      const r = await api.removeSchedule(device, id);
      print(out, r, () => `deleted ${r.id}`, () => [r.id]);
    }));
  for (const leaf of schedules.commands) withConnection(leaf);
}
