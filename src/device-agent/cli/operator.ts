/** The operator commands: jobs, devices, modules and keys, on the typed SDK. */
import { writeFileSync } from "node:fs";
import type { JWK } from "jose";
import { Command, Option } from "commander";
import type { DeviceView, JobListItem, JobView, LogLine, WasmvisorClient } from "../../sdk/index.js";

/** The SDK (and jose with it) is loaded only when an operator command runs: the agent process never needs it. */
export const sdk = () => import("../../sdk/index.js");
import { EXIT, fail, parseArg, print, readInputFile, readJsonFile, table, withProgress, type Output } from "./output.js";

type Global = { server: string; token: string; json?: boolean; quiet?: boolean };

/** Every operator command takes the connection options itself (the agent command has its own). */
export function withConnection(cmd: Command): Command {
  return cmd
    .addOption(new Option("--server <url>", "control plane URL").env("WASMVISOR_SERVER"))
    .addOption(new Option("--token <token>", "API key or admin token").env("WASMVISOR_TOKEN"))
    .option("--json", "print JSON instead of tables")
    .option("-q, --quiet", "print only ids, one per line (for shell variables)");
}

export async function client(cmd: Command): Promise<{ api: WasmvisorClient; out: Output }> {
  const g = cmd.opts<Global>();
  if (!g.server || !g.token) {
    process.stderr.write("error: set --server and --token (or WASMVISOR_SERVER and WASMVISOR_TOKEN)\n");
    process.exit(EXIT.usage);
  }
  return { api: new (await sdk()).WasmvisorClient({ server: g.server, token: g.token }), out: { json: Boolean(g.json), quiet: Boolean(g.quiet) } };
}

const jobRow = (j: JobView) => ({
  id: j.id,
  state: j.state,
  function: j.function,
  attempts: `${j.attempts}/${j.maxAttempts}`,
  result: j.result?.value ?? j.error?.message ?? null,
  createdAt: j.createdAt,
});

export function showJob(out: Output, job: JobView) {
  print(out, job, () => {
    const lines = [table([jobRow(job)], ["id", "state", "function", "attempts", "result", "createdAt"])];
    if (job.error) lines.push(`error (${job.error.kind}): ${job.error.message}`);
    if (job.result?.stdout) lines.push(`--- stdout${job.result.stdoutTruncated ? " (truncated)" : ""}\n${job.result.stdout.trimEnd()}`);
    if (job.result?.stderr) lines.push(`--- stderr${job.result.stderrTruncated ? " (truncated)" : ""}\n${job.result.stderr.trimEnd()}`);
    return lines.join("\n");
  }, () => [job.id]);
}

/** Waits for the job, then exits 0 if it succeeded and 1 if it ended otherwise. */
export async function waitAndExit(api: WasmvisorClient, out: Output, id: string, timeoutSeconds: number) {
  const job = await withProgress(`waiting for ${id}`, api.waitForJob(id, { timeoutSeconds }));
  showJob(out, job);
  process.exit(job.state === "SUCCEEDED" ? EXIT.ok : EXIT.jobFailed);
}

export const action = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => fn(...args).catch(fail);

export function operatorCommands(program: Command) {
  // Added at the end: the connection options on every leaf command.
  const leaves = (cmd: Command): Command[] => (cmd.commands.length ? cmd.commands.flatMap(leaves) : [cmd]);
  const jobs = program.command("jobs").description("submit, inspect, wait for and cancel jobs");
  jobs
    .command("submit")
    .description("submit a job: wasmvisor jobs submit <device> <module sha256> <function> [args...]")
    .argument("<device>")
    .argument("<module>")
    .argument("<function>")
    .argument("[args...]", "arguments; whole numbers stay exact, large ones may be given as they are")
    .option("--wait [seconds]", "wait for the job to end (exit 1 unless it succeeds)")
    .option("--timeout-ms <ms>", "job time limit", Number)
    .option("--max-attempts <n>", "attempts before giving up", Number)
    .option("--priority <n>", "higher runs first", Number)
    .option("--deadline <iso>", "not started by then: EXPIRED")
    .option("--no-start", "create without queueing (start later)")
    .option("--idempotency-key <key>", "repeat-safe submission")
    .option("--sign <private.jwk>", "sign the job with this orchestrator key (see keys generate)")
    .action(
      action(async (device: string, module: string, fn: string, args: string[], o: Record<string, unknown>, cmd: Command) => {
        const { api, out } = await client(cmd);
        const spec = {
          device,
          module,
          function: fn,
          args: args.map(parseArg),
          ...(o.timeoutMs ? { timeoutMs: o.timeoutMs as number } : {}),
          ...(o.maxAttempts ? { maxAttempts: o.maxAttempts as number } : {}),
          ...(o.priority !== undefined ? { priority: o.priority as number } : {}),
          ...(o.deadline ? { deadline: o.deadline as string } : {}),
          start: o.start !== false,
        };
        const headers: Record<string, string> = o.idempotencyKey ? { "idempotency-key": String(o.idempotencyKey) } : {};
        const job = o.sign
          ? (await api.submitSignedJob(await (await sdk()).signJob(readJsonFile<JWK>(String(o.sign), "signing key"), spec))).job
          : (await api.request<JobView>("POST", "/v1/jobs", spec, headers)).body;
        if (o.wait === undefined) return showJob(out, job);
        await waitAndExit(api, out, job.id, o.wait === true ? 3600 : Number(o.wait));
      }),
    );
  jobs
    .command("ls")
    .option("--device <id>")
    .option("--status <state>", "QUEUED, RUNNING, SUCCEEDED, FAILED, ...")
    .option("--limit <n>", "at most this many (newest pages are fetched in order)", Number, 100)
    .description("list jobs in creation order")
    .action(action(async (o: { device?: string; status?: string; limit: number }, cmd: Command) => {
      const { api, out } = await client(cmd);
      const rows: JobListItem[] = [];
      let cursor: string | undefined;
      do {
        const page = await api.listJobs({ limit: Math.min(500, o.limit - rows.length), ...(o.device ? { device: o.device } : {}), ...(o.status ? { status: o.status } : {}), ...(cursor ? { cursor } : {}) });
        rows.push(...page.jobs);
        cursor = page.nextCursor ?? undefined;
      } while (cursor && rows.length < o.limit);
      print(out, rows, () => table(rows.map((j) => ({ ...j })), ["id", "state", "function", "createdAt"]), () => rows.map((j) => j.id));
    }));
  jobs
    .command("get")
    .argument("<id>")
    .description("a job's state, result or error")
    .action(action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      showJob(out, await api.getJob(id));
    }));
  jobs
    .command("wait")
    .argument("<id>")
    .option("--timeout <seconds>", "give up after this long", Number, 3600)
    .description("wait for a job to end; exit 0 if it succeeded, 1 otherwise")
    .action(action(async (id: string, o: { timeout: number }, cmd: Command) => {
      const { api, out } = await client(cmd);
      await waitAndExit(api, out, id, o.timeout);
    }));
  jobs
    .command("cancel")
    .argument("<id>")
    .description("cancel a job (a running one is stopped on its device)")
    .action(action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      showJob(out, await api.cancelJob(id));
    }));
  jobs
    .command("logs")
    .argument("<id>")
    .option("-f, --follow", "keep printing lines as the job writes them, until it ends")
    .description("what the job wrote to stdout and stderr, line by line with times")
    .action(action(async (id: string, o: { follow?: boolean }, cmd: Command) => {
      const { api, out } = await client(cmd);
      const fmt = (l: LogLine) => (out.json ? JSON.stringify(l) : `${new Date(l.at).toISOString()} ${l.stream === "stderr" ? "ERR" : "OUT"} ${l.line}`);
      if (!o.follow) {
        const logs = await api.jobLogs(id);
        print(out, logs, () => logs.lines.map(fmt).join("\n"));
        return;
      }
      const lines = api.followLogs(id);
      for (;;) {
        const next = await lines.next();
        if (next.done) {
          process.stderr.write(`(job ${next.value.state})\n`);
          process.exit(next.value.state === "SUCCEEDED" ? EXIT.ok : EXIT.jobFailed);
        }
        process.stdout.write(fmt(next.value) + "\n");
      }
    }));

  const devices = program.command("devices").description("list and inspect devices");
  devices
    .command("ls")
    .option("--status <status>", "online or offline")
    .description("list devices")
    .action(action(async (o: { status?: "online" | "offline" }, cmd: Command) => {
      const { api, out } = await client(cmd);
      const all: DeviceView[] = [];
      let cursor: string | undefined;
      do {
        const page = await api.listDevices({ limit: 500, ...(cursor ? { cursor } : {}), ...(o.status ? { status: o.status } : {}) });
        all.push(...page.devices);
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      print(out, all, () =>
        table(
          all.map((d) => ({ id: d.id, name: d.name, status: d.status, cpu: d.health ? `${d.health.cpuPercent.toFixed(0)}%` : null, memory: d.health ? `${((100 * d.health.memoryUsedBytes) / d.health.memoryTotalBytes).toFixed(0)}%` : null, lastSeenAt: d.lastSeenAt })),
          ["id", "name", "status", "cpu", "memory", "lastSeenAt"],
        ),
        () => all.map((d) => d.id),
      );
    }));
  devices
    .command("show")
    .argument("<id>")
    .description("one device: capabilities, health, queue")
    .action(action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      const d = await api.getDevice(id);
      print(out, d, () =>
        [
          table([{ id: d.id, name: d.name, status: d.status, drained: d.drained, queued: d.queue?.queued, running: d.queue?.running }], ["id", "name", "status", "drained", "queued", "running"]),
          `cpu: ${d.description.platform.cpu.humanReadableName} (${d.description.platform.cpu.cores ?? "?"} cores), memory: ${(d.description.platform.memory.bytes / 2 ** 30).toFixed(1)} GiB`,
          d.health ? `health at ${d.health.at}: cpu ${d.health.cpuPercent.toFixed(1)}%, load ${d.health.loadAverage.map((l) => l.toFixed(2)).join(" ")}, disk free ${(d.health.diskFreeBytes / 2 ** 30).toFixed(1)} GiB, jobs running ${d.health.jobsRunning}` : "no health reported yet",
          `host interfaces: ${d.description.supervisorInterfaces.join(", ")}`,
        ].join("\n"),
      );
    }));

  program
    .command("modules")
    .description("upload modules")
    .command("push")
    .argument("<file>", "a .wasm file")
    .description("upload a module; prints its sha256 and exports")
    .action(action(async (file: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      const info = await api.uploadModule(readInputFile(file, "module"));
      print(out, info, () =>
        [`sha256 ${info.digest} (${info.size} bytes)`, table(info.exports.filter((e) => e.kind === "function").map((e) => ({ export: e.name, params: e.signature?.params.join(", "), results: e.signature?.results.join(", ") })), ["export", "params", "results"])].join("\n"),
        () => [info.digest],
      );
    }));

  const keys = program.command("keys").description("API keys (admin)");
  keys
    .command("create")
    .argument("<role>", "admin, user, register or metrics")
    .option("--label <label>")
    .option("--namespace <ns>", "scope the key to one tenant")
    .description("create a key; its secret is shown once")
    .action(action(async (role: "admin" | "user" | "register" | "metrics", o: { label?: string; namespace?: string }, cmd: Command) => {
      const { api, out } = await client(cmd);
      const key = await api.createKey(role, o.label, o.namespace);
      print(out, key, () => `${key.key}\n(key ${key.id}, role ${key.role}: store it now, it is not shown again)`, () => [key.key]);
    }));
  keys
    .command("generate")
    .description("make an orchestrator signing key pair: writes <out> (private, 0600) and <out>.pub.json (public)")
    .option("--alg <alg>", "EdDSA (Ed25519) or ES256 (P-256)", "EdDSA")
    .option("--out <file>", "where to write the private JWK", "orchestrator-key.jwk")
    .option("--kid <kid>", "key id (default: a random UUID)")
    .action(action(async (o: { alg: "EdDSA" | "ES256"; out: string; kid?: string }) => {
      const { privateJwk, publicJwk } = await (await sdk()).generateSigningKey(o.alg, o.kid);
      writeFileSync(o.out, JSON.stringify(privateJwk, null, 2), { mode: 0o600 });
      writeFileSync(`${o.out}.pub.json`, JSON.stringify(publicJwk, null, 2));
      process.stdout.write(`${JSON.stringify(publicJwk)}\nprivate key: ${o.out}; register the public one with: wasmvisor keys trust ${o.out}.pub.json\n`);
    }));
  keys
    .command("trust")
    .argument("<public.jwk>", "an orchestrator's public key")
    .option("--label <label>")
    .option("--namespace <ns>", "accept its signatures only for this namespace")
    .description("register an orchestrator's public key: jobs it signs are accepted")
    .action(action(async (file: string, o: { label?: string; namespace?: string }, cmd: Command) => {
      const { api, out } = await client(cmd);
      const key = await api.trustOrchestratorKey(readJsonFile<JWK>(file, "public key"), o.label, o.namespace);
      print(out, key, () => `trusted ${key.kid} (${key.alg})`);
    }));
  keys
    .command("ls")
    .description("list keys")
    .action(action(async (_o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      const list = await api.listKeys();
      print(out, list, () => table(list.map((k) => ({ ...k })), ["id", "role", "namespace", "label", "createdAt", "revokedAt"]), () => list.map((k) => k.id));
    }));
  keys
    .command("revoke")
    .argument("<id>")
    .description("revoke a key")
    .action(action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, out } = await client(cmd);
      const k = await api.revokeKey(id);
      print(out, k, () => `revoked ${k.id}`);
    }));

  for (const group of ["jobs", "devices", "modules", "keys"]) {
    for (const leaf of leaves(program.commands.find((c) => c.name() === group)!)) if (leaf.name() !== "generate") withConnection(leaf);
  }
}
