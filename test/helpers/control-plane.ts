/** Starts the real Worker (wrangler's unstable_startWorker: workerd with the real wrangler.toml) for Node-side tests. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WasmvisorClient } from "../../src/sdk/index.js";

process.env.CI = "true";
process.env.WRANGLER_SEND_METRICS = "false";
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.XDG_CONFIG_HOME ??= mkdtempSync(join(tmpdir(), "wv-xdg-"));

export const ADMIN_TOKEN = "e2e-admin-token-0123456789";
export const DEVICE_CREDENTIAL_KEY = "e2e-device-credential-key-0123456789abcdef";

/** Timers short enough for fault tests, long enough for a loaded 2-core machine. */
export const E2E_VARS = {
  ACK_TIMEOUT_MS: "3000",
  LEASE_GRACE_MS: "1000",
  HEARTBEAT_TIMEOUT_MS: "3000",
  RETRY_BASE_MS: "100",
};

export interface ControlPlane {
  url: string;
  admin: WasmvisorClient;
  persistDir: string;
  stop(): Promise<void>;
}

export async function startControlPlane(opts: { persistDir?: string; vars?: Record<string, string>; port?: number } = {}): Promise<ControlPlane> {
  const { unstable_startWorker } = await import("wrangler");
  const persistDir = opts.persistDir ?? mkdtempSync(join(tmpdir(), "wv-state-"));
  const vars = { ADMIN_TOKEN, DEVICE_CREDENTIAL_KEY, ...E2E_VARS, ...opts.vars };
  const worker = await unstable_startWorker({
    config: "wrangler.toml",
    bindings: Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, { type: "plain_text" as const, value: v }])),
    dev: { server: { hostname: "127.0.0.1", port: opts.port ?? 0 }, persist: persistDir, inspector: false, logLevel: process.env.WV_E2E_LOG ? "log" : "none", watch: false },
  });
  const url = (await worker.url).toString().replace(/\/$/, "");
  return { url, persistDir, admin: new WasmvisorClient({ server: url, token: ADMIN_TOKEN }), stop: () => worker.dispose() };
}
