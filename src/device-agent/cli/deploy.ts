/** Deployment commands: sign and deploy a manifest, inspect and remove it, call its functions, and the wasmiot facade. */
import type { JWK } from "jose";
import { Command, InvalidArgumentError } from "commander";
import type { DeploymentManifestInput, DeploymentView, WasmiotDiscovery } from "../../sdk/index.js";
import { action, client, sdk, waitAndExit, withConnection } from "./operator.js";
import { EXIT, print, readJsonFile, table, withProgress, type Output } from "./output.js";

function showDeployment(out: Output, d: DeploymentView) {
  print(out, d, () =>
    [
      `deployment ${d.id}: ${d.state} (namespace ${d.namespace}, ${d.source}${d.signedBy ? `, signed by ${d.signedBy}` : ""})`,
      table(d.devices.map((x) => ({ ...x })), ["device", "generation", "state", "reason", "updatedAt"]),
      table(d.modules.map((m) => ({ module: m.name, digest: m.digest.slice(0, 12), devices: m.devices.length, functions: m.functions.join(", ") })), ["module", "digest", "devices", "functions"]),
      ...(d.failover?.length ? [table(d.failover.map((f) => ({ module: f.module, home: f.home, current: f.current, movedAt: f.movedAt, why: f.note ?? f.reason })), ["module", "home", "current", "movedAt", "why"])] : []),
    ].join("\n"),
    () => [d.id],
  );
}

/** The manifest with every module placed on `devices` (when given): one example file serves any device. */
function placedOn(manifest: unknown, devices: string[] | undefined): unknown {
  if (!devices) return manifest;
  const m = manifest as { modules?: unknown };
  if (!Array.isArray(m?.modules)) return manifest; // the control plane explains what is wrong with it
  return { ...m, modules: m.modules.map((mod: object) => ({ ...mod, devices })) };
}

/** `name=value` pairs of a call. */
function param(raw: string, prev: Record<string, string> = {}) {
  const i = raw.indexOf("=");
  if (i <= 0) throw new InvalidArgumentError(`expected name=value, got ${raw}`);
  return { ...prev, [raw.slice(0, i)]: raw.slice(i + 1) };
}

export function deploymentCommands(program: Command) {
  const leaves: Command[] = [];
  leaves.push(
    program
      .command("deploy")
      .argument("<manifest.json>", "a deployment manifest (see docs/protocol.md)")
      .requiredOption("--key <key.jwk>", "the orchestrator's private JWK (wasmvisor keys generate); its public key must be trusted")
      .option("--wait <seconds>", "wait until every device has applied it", (v) => Number(v), 0)
      .option("--device <ids...>", "place every module on these devices (instead of the manifest's own)")
      .description("sign a manifest with your key and deploy it (all or nothing across its devices)")
      .action(action(async (file: string, o: { key: string; wait: number; device?: string[] }, cmd: Command) => {
        const { api, out } = await client(cmd);
        const { signDeployment } = await sdk();
        const manifest = placedOn(readJsonFile(file, "manifest"), o.device);
        const token = await signDeployment(readJsonFile<JWK>(o.key, "signing key"), manifest as DeploymentManifestInput);
        let d = await api.deploy(token);
        if (o.wait > 0) d = await withProgress(`waiting for ${d.id} to be applied`, api.waitForDeployment(d.id, { timeoutSeconds: o.wait }));
        showDeployment(out, d);
        if (d.state === "failed") process.exit(EXIT.jobFailed);
      })),
  );

  const deployments = program.command("deployments").description("inspect and remove deployments");
  leaves.push(
    deployments
      .command("ls")
      .description("list deployments")
      .action(action(async (_o: unknown, cmd: Command) => {
        const { api, out } = await client(cmd);
        const page = await api.listDeployments({ limit: 500 });
        print(out, page, () => table(page.deployments.map((d) => ({ ...d })), ["id", "namespace", "source", "generation", "updatedAt"]), () => page.deployments.map((d) => d.id));
      })),
    deployments
      .command("get")
      .argument("<id>")
      .description("a deployment's modules and each device's state")
      .action(action(async (id: string, _o: unknown, cmd: Command) => {
        const { api, out } = await client(cmd);
        showDeployment(out, await api.getDeployment(id));
      })),
    deployments
      .command("rm")
      .argument("<id>")
      .description("undeploy: devices remove its files; calls still queued are canceled")
      .action(action(async (id: string, _o: unknown, cmd: Command) => {
        const { api, out } = await client(cmd);
        const removed = await api.removeDeployment(id);
        print(out, removed, () => `removed ${id} from ${removed.devices.length} device(s)`, () => [id]);
      })),
  );

  leaves.push(
    program
      .command("call")
      .argument("<deployment>")
      .argument("<module>")
      .argument("<function>")
      .argument("[params...]", "name=value parameters", (v: string, prev: Record<string, string>) => param(v, prev), {})
      .option("--device <id>", "one of several devices holding the module")
      .option("--no-wait", "print the job id and return at once")
      .option("--timeout <seconds>", "how long to wait for the result", (v) => Number(v), 120)
      .description("call a deployed function by its parameter names; waits for the result (exit 1 if it failed)")
      .action(action(async (deployment: string, module: string, fn: string, params: Record<string, string>, o: { device?: string; wait: boolean; timeout: number }, cmd: Command) => {
        const { api, out } = await client(cmd);
        const accepted = await api.callFunction(deployment, module, fn, params, o.device);
        if (!o.wait) return print(out, accepted, () => accepted.job, () => [accepted.job]);
        await waitAndExit(api, out, accepted.job, o.timeout);
      })),
  );

  const wasmiot = program.command("wasmiot").description("the wasmiot-compatible facade");
  leaves.push(
    wasmiot
      .command("expose")
      .argument("<device>")
      .option("--rotate", "issue a new label; the old one stops answering")
      .description("the device's facade label: it answers as a wasmiot supervisor at <label>.<domain> (the same label each time unless --rotate)")
      .action(action(async (device: string, o: { rotate?: boolean }, cmd: Command) => {
        const { api, out } = await client(cmd);
        const facade = await api.exposeWasmiotFacade(device, { rotate: o.rotate === true });
        print(out, facade, () => `${facade.host}\n(the label is the capability: anyone with this host name can drive the device as a wasmiot orchestrator)`, () => [facade.host]);
      })),
  );
  // Announcing needs no control-plane credential: it talks to the wasmiot orchestrator only.
  wasmiot
    .command("register")
    .description("announce a device's facade to a wasmiot orchestrator, as its supervisors do (POST /file/device/discovery/register)")
    .requiredOption("--orchestrator <url>", "the wasmiot orchestrator, e.g. http://orchestrator:3000")
    .requiredOption("--host <host>", "the facade host (<label>.<domain>)")
    .option("--port <n>", "the port the orchestrator should call", (v) => Number(v), 80)
    .option("--name <name>", "the device name the orchestrator shows (default: the host's first label)")
    .action(action(async (o: { orchestrator: string; host: string; port: number; name?: string }) => {
      const body: WasmiotDiscovery = { name: o.name ?? o.host.split(".")[0]!, type: "webthing", port: o.port, properties: { path: "/", tls: "0" }, addresses: [o.host], host: o.host };
      const res = await fetch(`${o.orchestrator.replace(/\/+$/, "")}/file/device/discovery/register`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      if (!res.ok) {
        process.stderr.write(`error: the orchestrator answered ${res.status}: ${(await res.text()).slice(0, 500)}\n`);
        process.exit(EXIT.refused);
      }
      process.stdout.write(`announced ${body.name} at ${o.host}:${o.port} to ${o.orchestrator}\n`);
    }));
  for (const leaf of leaves) withConnection(leaf);
}
