/**
 * The index feed of a device object (src/durable/index-feed.ts) on a real object's SQLite:
 * one batch in flight at a time, backoff that later changes do not cut short, and a
 * counter that resumes past everything sent. The timers are the test's own, so each
 * flight and retry is stepped through by hand; the index is a recording sender.
 */
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { IndexFeed, type FeedTimers } from "../../src/durable/index-feed.js";
import { INDEX_FEED_TABLES, JOBS_TABLE, type IndexRow } from "../../src/durable/job-row.js";
import { Clock } from "../../src/core/clock.js";
import { sqlOf, type Sql } from "../../src/durable/sql-object.js";
import { sleep } from "./helpers.js";

class ManualTimers implements FeedTimers {
  queue: { fn: () => void; ms: number }[] = [];
  set(fn: () => void, ms: number) {
    const t = { fn, ms };
    this.queue.push(t);
    return t;
  }
  clear(handle: unknown) {
    this.queue = this.queue.filter((t) => t !== handle);
  }
  /** Fires what is due, then lets the sends it starts settle. */
  async step() {
    for (const t of this.queue.splice(0)) t.fn();
    await sleep(40);
  }
}

/** A sender whose answers the test decides, one at a time. */
class Index {
  batches: string[][] = [];
  private answer: { ok: () => void; fail: () => void } | null = null;
  send = (rows: IndexRow[]) => {
    this.batches.push(rows.map((r) => `${r.job_id}:${r.state}:${r.change_seq}`));
    return new Promise<void>((resolve, reject) => {
      this.answer = { ok: resolve, fail: () => reject(new Error("index unreachable")) };
    });
  };
  async land(ok: boolean) {
    const a = this.answer!;
    this.answer = null;
    if (ok) a.ok(); else a.fail();
    await sleep(10);
  }
}

/** A fresh object's database with the device's jobs and feed tables (the object is never registered, so its own feed stays idle). */
async function withFeedTables(name: string, fn: (sql: Sql) => Promise<void>) {
  const stub = env.DEVICES.get(env.DEVICES.idFromName(name));
  await runInDurableObject(stub, async (obj) => {
    const storage = (obj as unknown as { ctx: DurableObjectState }).ctx.storage;
    const sql: Sql = sqlOf(storage.sql);
    if (!sql.one("SELECT name FROM sqlite_master WHERE name = 'index_state'")) storage.sql.exec(JOBS_TABLE + INDEX_FEED_TABLES);
    if (!sql.all<{ name: string }>("PRAGMA table_info(index_state)").some((c) => c.name === "target")) storage.sql.exec("ALTER TABLE index_state ADD COLUMN target TEXT");
    await fn(sql);
  });
}

function insertJob(sql: Sql, feed: IndexFeed, id: string) {
  sql.run(
    `INSERT INTO jobs (id, state, priority, module, function, args, timeout_ms, max_attempts, created_at, updated_at, change_seq)
     VALUES (?, 'QUEUED', 0, 'm', 'f', '[]', 1000, 1, 1, 1, ?)`,
    id, feed.nextChange(),
  );
  feed.schedule();
}

describe("the index feed", () => {
  it("keeps one batch in flight: changes made meanwhile go once, in the next batch, after it lands", async () => {
    await withFeedTables("feed-in-flight", async (sql) => {
      const timers = new ManualTimers();
      const index = new Index();
      const feed = new IndexFeed(sql, () => index.send, { clock: new Clock(), timers });
      insertJob(sql, feed, "a");
      await timers.step();
      expect(index.batches).toEqual([["a:QUEUED:1"]]);
      insertJob(sql, feed, "b"); // while "a" is in flight
      sql.run("UPDATE jobs SET state = 'CANCELED', change_seq = ? WHERE id = 'a'", feed.nextChange());
      feed.schedule();
      await timers.step();
      expect(index.batches).toEqual([["a:QUEUED:1"]]);
      await index.land(true);
      await timers.step();
      expect(index.batches).toEqual([["a:QUEUED:1"], ["b:QUEUED:2", "a:CANCELED:3"]]);
      await index.land(true);
      await timers.step();
      expect(index.batches).toHaveLength(2);
      expect(sql.one<{ sent_seq: number }>("SELECT sent_seq FROM index_state")!.sent_seq).toBe(3);
    });
  });

  it("retries a failed send with growing backoff that later changes do not cut short, and asks to be woken by then", async () => {
    await withFeedTables("feed-backoff", async (sql) => {
      const timers = new ManualTimers();
      const index = new Index();
      const clock = new Clock();
      clock.set(1_000_000);
      const wakes: number[] = [];
      const feed = new IndexFeed(sql, () => index.send, { clock, timers, retryBaseMs: 1_000, wakeBy: (at) => wakes.push(at) });
      insertJob(sql, feed, "a");
      await timers.step();
      await index.land(false);
      expect(timers.queue.map((t) => t.ms)).toEqual([expect.any(Number)]);
      const first = timers.queue[0]!.ms;
      expect(first).toBeGreaterThanOrEqual(500);
      expect(first).toBeLessThanOrEqual(1_000);
      expect(wakes).toEqual([1_000_000 + first]);
      expect(feed.wakeAt()).toBe(1_000_000 + first);

      insertJob(sql, feed, "b"); // a change during the backoff waits for the retry
      expect(timers.queue.map((t) => t.ms)).toEqual([first]);
      await timers.step();
      expect(index.batches[1]).toEqual(["a:QUEUED:1", "b:QUEUED:2"]);
      await index.land(false);
      const second = timers.queue[0]!.ms;
      expect(second).toBeGreaterThanOrEqual(1_000);
      expect(second).toBeLessThanOrEqual(2_000);

      await timers.step();
      await index.land(true);
      expect(timers.queue).toEqual([]);
      expect(feed.wakeAt()).toBeNull();
      expect(sql.one<{ sent_seq: number }>("SELECT sent_seq FROM index_state")!.sent_seq).toBe(2);
      insertJob(sql, feed, "c"); // after a success the coalescing delay is short again
      expect(timers.queue.map((t) => t.ms)).toEqual([20]);
    });
  });

  it("feeds a new index object (INDEX_SHARDS changed) every job from the start", async () => {
    await withFeedTables("feed-retarget", async (sql) => {
      const timers = new ManualTimers();
      const index = new Index();
      let target = "jobs/0/4";
      const feed = new IndexFeed(sql, () => index.send, { clock: new Clock(), timers, target: () => target });
      insertJob(sql, feed, "a");
      insertJob(sql, feed, "b");
      await timers.step();
      await index.land(true);
      expect(index.batches).toEqual([["a:QUEUED:1", "b:QUEUED:2"]]);
      feed.resume();
      expect(timers.queue).toEqual([]); // nothing new for the same target
      target = "jobs/3/8";
      feed.resume();
      await timers.step();
      await index.land(true);
      expect(index.batches[1]).toEqual(["a:QUEUED:1", "b:QUEUED:2"]);
    });
  });

  it("resumes its counter past everything sent, even when the last change sent was a deleted job", async () => {
    await withFeedTables("feed-reload", async (sql) => {
      const timers = new ManualTimers();
      const index = new Index();
      const feed = new IndexFeed(sql, () => index.send, { clock: new Clock(), timers });
      insertJob(sql, feed, "a");
      await timers.step();
      await index.land(true);
      sql.run("DELETE FROM jobs WHERE id = 'a'");
      sql.run("INSERT INTO index_tombstones (change_seq, job_id) VALUES (?, 'a')", feed.nextTombstone());
      feed.schedule();
      await timers.step();
      expect(index.batches[1]).toEqual(["a:DELETED:2"]);
      await index.land(true);
      expect(sql.one<{ n: number }>("SELECT COUNT(*) AS n FROM index_tombstones")!.n).toBe(0);

      const reloaded = new IndexFeed(sql, () => index.send, { clock: new Clock(), timers });
      reloaded.load();
      expect(reloaded.nextChange()).toBe(3);
    });
  });
});
