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
import { JobFailover } from "./job-failover.js";
import type { Clock } from "../core/clock.js";
import type { Env } from "../platform/env.js";
import { settingsFrom } from "../platform/settings.js";
import { jobIndexShardName, jobIndexStub, registryStub } from "../platform/stubs.js";

export type DeviceParts = ReturnType<typeof composeDevice>;

export function composeDevice(ctx: DurableObjectState, env: Env, sql: Sql, clock: Clock) {
  const settings = settingsFrom(env);
  const transaction = (fn: () => void) => ctx.storage.transactionSync(fn);
  const deviceId = () => presence.device!.id;
  const timers = new AlarmTimers(ctx.storage);
  const presence = new DevicePresence(sql, env, clock, settings, timers, (p) => ctx.waitUntil(p));
  const link = new AgentLink(ctx, clock);
  const agentLogs = new AgentLogs(sql);
  const waiters = new ResultWaiters();
  const output = new JobOutput(sql, clock);
  const store = new JobStore(sql);
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
    },
  );
  const removal = new JobRemoval(sql, transaction, env.MODULES, feed, output);
  const retention = new JobRetention(
    sql,
    async () => (await registryStub(env).namespaceSettings(presence.device!.namespace)).retention,
    (jobs) => removal.deleteEnded(jobs),
  );
  const deployments = new DeviceDeployments(sql, clock);
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
  const session = new AgentSession({
    presence, link, jobs, lifecycle, store,
    output, agentLogs, clock, desiredVersion: () => deployments.version,
    durable: () => ctx.storage.sync(),
  });

  const failover = new JobFailover(sql, clock, env, presence, lifecycle, transaction, (id) => store.state(id));

  timers.register((now) => store.dueTimes(now));
  timers.register(() => failover.dueAt());
  timers.register(() => feed.wakeAt());
  timers.register((now) => retention.dueAt(now));
  timers.register(() => forwards.nextTry());
  return { settings, transaction, deviceId, timers, presence, link, agentLogs, waiters, output, store, feed, removal, retention, deployments, forwards, lifecycle, jobs, deviceCalls, session, failover };
}
