/**
 * The device's identity: the credential saved in the data directory, or, on the first start,
 * a registration with the register key, retried until the control plane answers.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ApiError, type ControlPlaneClient } from "./api-client.js";
import { describeDevice, type DeviceConfig } from "./machine.js";
import { agentBackoffMs } from "./agent-backoff.js";
import type { AgentLog } from "./agent-log.js";

export type SavedCredential = { server: string; deviceId: string; credential: string };

export interface RegistrationInput {
  server: string;
  /** a register key; needed only until the agent has its device credential */
  registerToken?: string;
  dataDir: string;
  poolSize: number;
  device: DeviceConfig;
  version: string;
}

/** The saved credential, or a new one from registering (then saved, readable by the agent's user only). */
export async function loadOrRegister(opts: RegistrationInput, client: ControlPlaneClient, log: AgentLog, isStopping: () => boolean): Promise<SavedCredential> {
  const file = join(opts.dataDir, "credential.json");
  const existing = await readFile(file, "utf8").catch(() => null);
  if (existing) return JSON.parse(existing) as SavedCredential;
  if (!opts.registerToken) throw new Error(`no device credential in ${file} and no register token (--token) to get one`);
  const description = describeDevice(opts.device, opts.version, opts.poolSize);
  const body = { ...(opts.device.name ? { name: opts.device.name } : {}), description };
  const reg = await registerWithRetry(client, opts.registerToken, body, log, isStopping);
  const saved: SavedCredential = { server: opts.server, deviceId: reg.deviceId, credential: reg.credential };
  await writeFile(file, JSON.stringify(saved, null, 2), { mode: 0o600 });
  log("info", "registered", { deviceId: reg.deviceId });
  return saved;
}

/**
 * Registers, retrying for as long as it takes when the control plane cannot be reached or answers
 * with trouble of its own (no network condition ends the agent); a refusal of the key itself is final.
 */
async function registerWithRetry(client: ControlPlaneClient, token: string, body: Parameters<ControlPlaneClient["register"]>[1], log: AgentLog, isStopping: () => boolean) {
  for (let failures = 1; ; failures++) {
    try {
      return await client.register(token, body);
    } catch (e) {
      if (e instanceof ApiError && e.permanent) throw e;
      if (isStopping()) throw e;
      const delay = agentBackoffMs(failures);
      log("warn", "could not register; retrying", { error: String(e), retryInMs: Math.round(delay) });
      await sleep(delay);
    }
  }
}
