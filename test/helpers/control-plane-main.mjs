/**
 * The control plane as a process of its own, so a test can crash it for real (SIGKILL to its
 * process group takes workerd with it) and start it again on the same port and persisted state.
 * Usage: node test/helpers/control-plane-main.mjs '{"persistDir": "...", "port": 0, "vars": {...}}'
 * Prints one line `{"url": "..."}` when it serves; the Worker's own logs follow on stdout.
 */
import { unstable_startWorker } from "wrangler";

const { persistDir, port, vars } = JSON.parse(process.argv[2] ?? "{}");
const worker = await unstable_startWorker({
  config: "wrangler.toml",
  bindings: Object.fromEntries(Object.entries(vars ?? {}).map(([k, v]) => [k, { type: "plain_text", value: String(v) }])),
  dev: { server: { hostname: "127.0.0.1", port: port ?? 0 }, persist: persistDir, inspector: false, logLevel: "log", watch: false },
});
const url = (await worker.url).toString().replace(/\/$/, "");
process.stdout.write(JSON.stringify({ url }) + "\n");
const stop = () => void worker.dispose().finally(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
