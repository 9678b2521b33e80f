/**
 * The wiring of a device object: builds each part with the parts it needs and registers
 * their due times with the alarm timers. One place to see how the parts depend on each
 * other (docs/design.md, "Device object parts").
 */
import type { Sql } from "./sql-object.js";
import { DevicePresence } from "./device-presence.js";
import { AlarmTimers } from "./alarm-timers.js";
import { AgentLink } from "./agent-link.js";
import { AgentLogs } from "./agent-logs.js";
import { ResultWaiters } from "./result-waiters.js";
import { JobStore } from "./job-store.js";
import { JobLifecycle } from "./job-lifecycle.js";
import { JobRemoval } from "./job-removal.js";
import { JobOutput } from "./job-output.js";
import { IndexFeed } from "./index-feed.js";
import { JobRetention } from "./job-retention.js";
import { DeviceJobs } from "./device-jobs.js";
import { DeviceDeployments } from "./device-deployments.js";
import { ChainForwards } from "./chain-forward.js";
import { DeviceCalls } from "./device-calls.js";
import { AgentSession } from "./agent-session.js";
import { Schedules } from "./schedules.js";
import { DeviceServices } from "./device-services.js";
import { DeviceEvents } from "./device-events.js";
import { AgentEpochs } from "./agent-epochs.js";
import { DeviceCommands } from "./device-commands.js";
import { DeviceAudit } from "./device-audit.js";
import { JobFailover } from "./job-failover.js";
import { DeviceTallies } from "./device-tallies.js";
import type { Clock } from "../core/clock.js";
import type { Env } from "../platform/env.js";
import { settingsFrom } from "../platform/settings.js";
import { auditStub, deviceListStub, eventRelayStub, jobIndexShardName, jobIndexStub, registryStub } from "../platform/stubs.js";
import { listingShard } from "../core/device-listing.js";

export type DeviceParts = ReturnType<typeof composeDevice>;

/** The same queries, each run after `first` (cheap when it has nothing to do). */
function writingAnsweredFirst(sql: Sql, first: () => void): Sql {
  return {
    all: (q: never, ...p: never[]) => (first(), sql.all(q, ...p)),
    one: (q: never, ...p: never[]) => (first(), sql.one(q, ...p)),
    run: (q: never, ...p: never[]) => (first(), sql.run(q, ...p)),
  } as Sql;
}

export function composeDevice(ctx: DurableObjectState, env: Env, sql: Sql, clock: Clock) {
  const settings = settingsFrom(env);
  const transaction = (fn: () => void) => ctx.storage.transactionSync(fn);
  const deviceId = () => presence.device!.id;
  const timers = new AlarmTimers(ctx.storage);
  const events = new DeviceEvents(
    sql,
    clock,
    () => {
      const d = presence.device;
      return d ? (batch) => eventRelayStub(env, d.namespace, d.id).relay(d.namespace, batch) : undefined;
    },
    settings.retryBaseMs,
    (at) => timers.wakeBy(at),
  );
  const presence = new DevicePresence(sql, env, clock, settings, timers, (p) => ctx.waitUntil(p), () => events.changed());
  const link = new AgentLink(ctx, clock);
  const audit = new DeviceAudit(sql, clock, () => presence.device ?? null, (ns, records) => auditStub(env, ns).append(records), (p) => ctx.waitUntil(p));
  link.observer = (msg) => audit.sent(msg);
  const agentLogs = new AgentLogs(sql);
  const waiters = new ResultWaiters();
  const output = new JobOutput(sql, clock);
  // Every read of the jobs writes answered-but-unwritten results first (JobLifecycle.answerEarly): no read shows less than a caller was told.
  const store = new JobStore(writingAnsweredFirst(sql, () => lifecycle.writeAnswered()));
  const feed = new IndexFeed(
    sql,
    () => {
      const d = presence.device;
      return d ? (rows) => jobIndexStub(env, d.id).apply(d.id, d.namespace, rows) : undefined;
    },
    {
      clock,
      retryBaseMs: settings.retryBaseMs,
      wakeBy: (at) => timers.wakeBy(at),
      target: () => (presence.device ? jobIndexShardName(env, presence.device.id) : undefined),
      // Job events carry their time (the trigger writes the row's updated_at): nothing to stamp.
      changed: () => events.changed(false),
    },
  );
  const removal = new JobRemoval(sql, transaction, env.MODULES, feed, output);
  const retention = new JobRetention(
    sql,
    async () => (await registryStub(env).namespaceSettings(presence.device!.namespace)).retention,
    (jobs) => removal.deleteEnded(jobs),
  );
  // deployment rows carry their time (nothing to stamp); the metrics tally goes out too
  const deployments = new DeviceDeployments(sql, clock, () => {
    events.changed(false);
    tallies.changed();
  });
  const forwards = new ChainForwards(sql, env, settings.retryBaseMs, clock, () => presence.device!.namespace);
  const lifecycle = new JobLifecycle({
    sql, transaction, clock, settings, feed, output, waiters, timers,
    keepEndedMs: () => retention.keepEndedMs(),
    deviceId,
    ended: (jobId, state, chained, now) => {
      // A succeeded chain step hands its output on, from the alarm (so a restart cannot lose it).
      if (state !== "SUCCEEDED" || !chained) return;
      forwards.queue(jobId, now);
      timers.wakeBy(now);
    },
  });
  const jobs = new DeviceJobs({
    presence, store, lifecycle, removal,
    waiters, link, timers, clock, transaction,
  });
  const deviceCalls = new DeviceCalls({
    deviceId, deployments, jobs, store,
    lifecycle, link, clock, transaction,
  });
  const services = new DeviceServices({
    sql, clock, transaction, deviceId,
    wakeBy: (at) => timers.wakeBy(at),
    notify: (version) => {
      // The agent learns of new desired services over its socket, or by an open poll answered now.
      link.notify({ t: "services", version });
      link.releasePolls();
      servicesChanged();
    },
    reported: () => servicesChanged(),
  });
  // a service's status may have changed: its event (written by a trigger) and the metrics tally go out
  const servicesChanged = () => {
    events.changed();
    tallies.changed();
  };
  // GET /metrics: services by status and deployment parts by state, pushed to the listing shard (device-tallies.ts)
  const tallies = new DeviceTallies(
    sql,
    clock,
    () => {
      const d = presence.device;
      return d ? (rows, revision) => deviceListStub(env, d.namespace, listingShard(d.id, settings.deviceListShards)).publishTally(d.id, rows, revision) : undefined;
    },
    { retryBaseMs: settings.retryBaseMs, wakeBy: (at) => timers.wakeBy(at), waitUntil: (p) => ctx.waitUntil(p) },
  );
  const epochs = new AgentEpochs(sql);
  const commands = new DeviceCommands(sql, clock, () => settings.commandTtlMs, (at) => timers.wakeBy(at));
  link.stamp = (msg) => commands.stamp(msg);
  const session = new AgentSession({
    presence, link, jobs, lifecycle, store,
    output, agentLogs, epochs, commands, transaction, clock, desiredVersion: () => deployments.version,
    services,
    durable: () => ctx.storage.sync(),
    waiters,
    afterAnswers: () => new Promise((resolve) => setTimeout(resolve, 0)),
    stopped: (jobIds) => audit.stopped(jobIds),
  });

  const schedules = new Schedules({
    sql, transaction, clock, timers, presence, store, lifecycle,
    dispatch: () => jobs.dispatch(),
    signedOnly: async () =>
      env.REQUIRE_SIGNED_JOBS === "true" || (await registryStub(env).namespaceSettings(presence.device!.namespace)).requireSignedJobs,
  });
  // Service-target schedules start services through the services part, once per occurrence id.
  schedules.setServiceStarter({ exists: (id) => services.has(id), startFromSchedule: (id, occ, now) => services.startFromSchedule(id, occ, now) });
  const failover = new JobFailover(sql, clock, env, presence, lifecycle, transaction, (id) => store.state(id));

  timers.register((now) => store.dueTimes(now));
  timers.register(() => failover.dueAt());
  timers.register(() => feed.wakeAt());
  timers.register((now) => retention.dueAt(now));
  timers.register(() => forwards.nextTry());
  timers.register(() => schedules.nextDue());
  timers.register(() => services.nextDue());
  timers.register(() => events.outbox.wakeAt());
  timers.register(() => commands.dueAt());
  timers.register(() => tallies.dueAt());
  return { settings, transaction, deviceId, timers, events, presence, link, audit, agentLogs, waiters, output, store, feed, removal, retention, deployments, forwards, lifecycle, jobs, deviceCalls, session, schedules, services, epochs, commands, failover, tallies };
}
