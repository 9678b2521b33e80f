/** What the device is and how it is doing, read from the real machine. */
import os from "node:os";
import { statfs } from "node:fs/promises";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { DeviceDescription, type Health } from "../protocol/device.js";

/** Optional per-device file: what the agent cannot discover (cameras, sensors, labels) and a name. */
export const DeviceConfig = z.strictObject({
  name: z.string().optional(),
  capabilities: DeviceDescription.shape.capabilities.optional(),
});
export type DeviceConfig = z.infer<typeof DeviceConfig>;

export function readDeviceConfig(path: string | undefined): DeviceConfig {
  if (!path) return {};
  return DeviceConfig.parse(JSON.parse(readFileSync(path, "utf8")));
}

/** The WASI preview1 functions this Node really links into guests. */
export function linkedInterfaces(): string[] {
  // Loaded here, not imported: node:wasi warns when it loads, and the bundled CLI links its
  // imports before the warning filter (quiet-warnings.ts) has run.
  const { WASI } = createRequire(import.meta.url)("node:wasi") as typeof import("node:wasi");
  const wasi = new WASI({ version: "preview1", returnOnExit: true });
  return Object.keys(wasi.wasiImport).sort();
}

export function describeDevice(config: DeviceConfig, agentVersion: string, poolSize: number): DeviceDescription {
  const cpus = os.cpus();
  return DeviceDescription.parse({
    platform: {
      memory: { bytes: os.totalmem() },
      cpu: {
        humanReadableName: cpus[0]?.model.trim() || os.arch(),
        clockSpeed: { Hz: (cpus[0]?.speed ?? 0) * 1e6 },
        cores: Math.max(1, cpus.length),
        arch: os.arch(),
      },
      os: { type: os.type(), release: os.release() },
    },
    supervisorInterfaces: linkedInterfaces(),
    capabilities: config.capabilities ?? {},
    agent: { version: agentVersion, node: process.version, poolSize },
  });
}

type CpuTimes = { idle: number; total: number };
const cpuTimes = (): CpuTimes =>
  os.cpus().reduce(
    (acc, c) => {
      const t = c.times;
      return { idle: acc.idle + t.idle, total: acc.total + t.user + t.nice + t.sys + t.idle + t.irq };
    },
    { idle: 0, total: 0 },
  );

/** CPU % is measured between two samples, so the sampler keeps the previous one. */
export class HealthSampler {
  private last = cpuTimes();
  constructor(private readonly dataDir: string) {}

  async sample(jobsRunning: number): Promise<Health> {
    const now = cpuTimes();
    const total = now.total - this.last.total;
    const busy = total - (now.idle - this.last.idle);
    this.last = now;
    const fs = await statfs(this.dataDir);
    const [l1, l5, l15] = os.loadavg();
    return {
      cpuPercent: total > 0 ? Math.min(100, Math.max(0, (busy / total) * 100)) : 0,
      memoryUsedBytes: os.totalmem() - os.freemem(),
      memoryTotalBytes: os.totalmem(),
      loadAverage: [l1 ?? 0, l5 ?? 0, l15 ?? 0],
      uptimeSeconds: os.uptime(),
      diskFreeBytes: fs.bavail * fs.bsize,
      jobsRunning,
      agentRssBytes: process.memoryUsage.rss(),
    };
  }
}
