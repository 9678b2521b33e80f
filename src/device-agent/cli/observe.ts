/** `wasmvisor events` (the event stream) and `wasmvisor top` (a live fleet view in the terminal). */
import type { Command } from "commander";
import type { DeviceView, FleetEvent, JobListItem, WasmvisorClient } from "../../sdk/index.js";
import { action, client, withConnection } from "./operator.js";
import { table } from "./output.js";

const list = (v: string, prev: string[] = []) => [...prev, ...v.split(",").map((s) => s.trim()).filter(Boolean)];

const eventLine = (e: FleetEvent) => {
  const data = Object.entries(e.data).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : String(v)}`).join(" ");
  return [e.id.padStart(6), e.at.slice(11, 23), e.kind.padEnd(18), e.device ?? "-", e.job ?? e.deployment ?? "-", data].join("  ");
};

export function observeCommands(program: Command) {
  const events = program
    .command("events")
    .description("follow the namespace's event stream (devices online/offline, job states, deployments); reconnects with Last-Event-ID")
    .option("--device <id>", "only this device's events")
    .option("--job <id>", "only this job's events")
    .option("--deployment <id>", "only this deployment's events")
    .option("--kind <kinds>", "only these kinds (comma-separated; job.* for a family); repeatable", list)
    .option("--last-event-id <id>", "resume after this event id")
    .option("--tail <n>", "start with the newest N stored events", (v) => Number(v))
    .option("--no-follow", "print the stored events (with --tail or --last-event-id) and exit")
    .action(action(async (o: { device?: string; job?: string; deployment?: string; kind?: string[]; lastEventId?: string; tail?: number; follow: boolean }, cmd: Command) => {
      const { api, out } = await client(cmd);
      const stop = new AbortController();
      process.once("SIGINT", () => stop.abort());
      for await (const e of api.events({
        filters: { device: o.device, job: o.job, deployment: o.deployment, kinds: o.kind },
        lastEventId: o.lastEventId,
        tail: o.tail,
        follow: o.follow,
        signal: stop.signal,
        onGap: (g) => process.stderr.write(`warning: events after ${g.after} up to ${g.oldest - 1} left the replay window before they could be sent\n`),
      })) {
        process.stdout.write((out.json ? JSON.stringify(e) : out.quiet ? e.id : eventLine(e)) + "\n");
      }
    }));
  withConnection(events);

  const top = program
    .command("top")
    .description("a live fleet view: devices, online, queue, running jobs, recent events (follows the event stream)")
    .option("--once", "print one frame and exit")
    .option("--rows <n>", "devices shown", (v) => Number(v), 15)
    .action(action(async (o: { once?: boolean; rows: number }, cmd: Command) => {
      const { api, out } = await client(cmd);
      const view = new FleetView(api, o.rows);
      await view.refresh();
      await view.loadRecent();
      if (o.once) {
        process.stdout.write((out.json ? JSON.stringify(view.snapshot(), null, 2) : view.frame()) + "\n");
        return;
      }
      await view.live();
    }));
  withConnection(top);
}

/** The devices shown, and the fleet's counts: read from the listings, kept current by the event stream. */
class FleetView {
  private devices: DeviceView[] = [];
  private total = 0;
  private more = false;
  private queued = 0;
  private running: JobListItem[] = [];
  private moreQueued = false;
  private recent: FleetEvent[] = [];
  private lastEventId: string | undefined;
  private at = new Date();

  constructor(private readonly api: WasmvisorClient, private readonly rows: number) {}

  /** Devices (up to 5,000 read; beyond, the counts say "at least"), queued and running jobs. */
  async refresh() {
    const all: DeviceView[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.api.listDevices({ limit: 500, ...(cursor ? { cursor } : {}) });
      all.push(...page.devices);
      cursor = page.nextCursor ?? undefined;
    } while (cursor && all.length < 5_000);
    this.more = cursor !== undefined;
    this.total = all.length;
    this.devices = all;
    const [queued, running] = await Promise.all([this.api.listJobs({ status: "QUEUED", limit: 500 }), this.api.listJobs({ status: "RUNNING", limit: 500 })]);
    this.queued = queued.jobs.length;
    this.moreQueued = queued.nextCursor !== null;
    this.running = running.jobs;
    this.at = new Date();
  }

  async loadRecent() {
    for await (const e of this.api.events({ tail: 10, follow: false })) this.take(e);
  }

  private take(e: FleetEvent) {
    this.recent = [...this.recent, e].slice(-10);
    this.lastEventId = e.id;
    if (e.device && (e.kind === "device.online" || e.kind === "device.offline")) {
      const d = this.devices.find((x) => x.id === e.device);
      if (d) d.status = e.kind === "device.online" ? "online" : "offline";
    }
  }

  snapshot() {
    const online = this.devices.filter((d) => d.status === "online").length;
    return { at: this.at.toISOString(), devices: { total: this.total, online, offline: this.total - online, more: this.more }, jobs: { queued: this.queued, queuedMore: this.moreQueued, running: this.running.length }, running: this.running, recent: this.recent };
  }

  frame(): string {
    const s = this.snapshot();
    const atLeast = (more: boolean) => (more ? "≥" : "");
    const shown = [...this.devices].sort((a, b) => (a.status === b.status ? 0 : a.status === "online" ? -1 : 1)).slice(0, this.rows);
    const pct = (n: number) => `${n.toFixed(0)}%`;
    return [
      `wasmvisor top  ${this.api.server}  ${s.at.slice(0, 19).replace("T", " ")} UTC`,
      `devices ${atLeast(s.devices.more)}${s.devices.total}  online ${s.devices.online}  offline ${s.devices.offline}    jobs queued ${atLeast(s.jobs.queuedMore)}${s.jobs.queued}  running ${s.jobs.running}`,
      "",
      table(
        shown.map((d) => ({ id: d.id, name: d.name, status: d.status, cpu: d.health ? pct(d.health.cpuPercent) : null, memory: d.health ? pct((100 * d.health.memoryUsedBytes) / d.health.memoryTotalBytes) : null, lastSeenAt: d.lastSeenAt?.slice(11, 19) ?? null })),
        ["id", "name", "status", "cpu", "memory", "lastSeenAt"],
      ),
      ...(this.devices.length > shown.length ? [`… ${this.devices.length - shown.length} more`] : []),
      "",
      "RUNNING",
      this.running.length === 0 ? "-" : table(this.running.slice(0, 10).map((j) => ({ id: j.id, function: j.function, updatedAt: j.updatedAt.slice(11, 19) })), ["id", "function", "updatedAt"]),
      "",
      "RECENT EVENTS",
      ...(this.recent.length === 0 ? ["-"] : this.recent.map(eventLine)),
    ].join("\n");
  }

  /** Follows the stream; redraws in place at most 4 times a second, re-reads counts on changes and every interval. */
  async live() {
    const stop = new AbortController();
    process.once("SIGINT", () => stop.abort());
    let dirty = true;
    let stale = false;
    const draw = () => {
      if (!dirty) return;
      dirty = false;
      process.stdout.write("\x1b[H\x1b[2J" + this.frame() + "\n");
    };
    const drawer = setInterval(draw, 250);
    const refresher = setInterval(() => {
      void this.refresh().then(() => (dirty = true), () => undefined);
      stale = false;
    }, 5_000);
    const quickRefresh = setInterval(() => {
      if (!stale) return;
      stale = false;
      void this.refresh().then(() => (dirty = true), () => undefined);
    }, 1_000);
    draw();
    try {
      for await (const e of this.api.events({ lastEventId: this.lastEventId, signal: stop.signal })) {
        this.take(e);
        stale = true;
        dirty = true;
      }
    } finally {
      clearInterval(drawer);
      clearInterval(refresher);
      clearInterval(quickRefresh);
    }
  }
}
