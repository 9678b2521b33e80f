import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { call, poll, registerDevice, report, sleep, submit, uploadModule } from "./helpers.js";
import { shardOf } from "../../src/core/shards.js";
import { indexShardCount } from "../../src/platform/settings.js";

/** The index is fed asynchronously (tens of ms): wait until it shows what we expect. */
async function listed(query: string, until: (jobs: { id: string; state: string }[]) => boolean) {
  for (let i = 0; i < 100; i++) {
    const all: { id: string; state: string }[] = [];
    let cursor: string | null = null;
    do {
      const res: { status: number; body: { jobs: { id: string; state: string }[]; nextCursor: string | null } } = await call("GET", `/v1/jobs?${query}&limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(res.status).toBe(200);
      expect(res.body.jobs.length).toBeLessThanOrEqual(2);
      all.push(...res.body.jobs);
      cursor = res.body.nextCursor;
    } while (cursor);
    if (until(all)) return all;
    await sleep(50);
  }
  throw new Error(`the index never showed the expected jobs for ${query}`);
}

describe("listing jobs from the index", () => {
  it("pages through jobs in creation order, filtered by device and by status", async () => {
    const a = await registerDevice("list-a");
    const b = await registerDevice("list-b");
    const digest = await uploadModule("math");
    const mine: string[] = [];
    for (let i = 0; i < 3; i++) mine.push((await submit(a.deviceId, digest, "add32", [i, 0])).body.id);
    await submit(b.deviceId, digest, "add32", [9, 9]);

    const ofA = await listed(`device=${a.deviceId}`, (jobs) => jobs.length === 3);
    expect(ofA.map((j) => j.id)).toEqual(mine);

    const lease = (await poll(a.credential, 1)).body.jobs[0];
    await report(a.credential, lease.jobId, lease.leaseToken, 0);
    const succeeded = await listed(`device=${a.deviceId}&status=SUCCEEDED`, (jobs) => jobs.length === 1);
    expect(succeeded[0]!.id).toBe(mine[0]);

    await call("DELETE", `/v1/jobs/${mine[0]}`);
    await listed(`device=${a.deviceId}`, (jobs) => jobs.length === 2 && !jobs.some((j) => j.id === mine[0]));
    const everything = await listed("status=QUEUED", (jobs) => jobs.some((j) => j.id === mine[2]));
    expect(everything.some((j) => j.id === mine[1])).toBe(true);
  });

  it("merges the index shards into one creation order, paging across them without loss or repeat", async () => {
    const shards = indexShardCount(env);
    expect(shards).toBeGreaterThan(1);
    // Devices until three shards are covered (ids are random; a few are enough).
    const devices: string[] = [];
    const covered = new Set<number>();
    while (covered.size < Math.min(3, shards)) {
      const d = (await registerDevice(`shard-${devices.length}`)).deviceId;
      devices.push(d);
      covered.add(shardOf(d, shards));
    }
    const digest = await uploadModule("math");
    const mine: { id: string; createdAt: string }[] = [];
    for (let round = 0; round < 3; round++) {
      for (const d of devices) {
        const job = (await submit(d, digest, "add32", [round, 1])).body;
        mine.push({ id: job.id, createdAt: job.createdAt });
      }
    }
    const expected = [...mine].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || (a.id < b.id ? -1 : 1)).map((j) => j.id);
    const ours = new Set(expected);
    const all = await listed("status=QUEUED", (jobs) => jobs.filter((j) => ours.has(j.id)).length === mine.length);
    expect(new Set(all.map((j) => j.id)).size).toBe(all.length); // no job on two pages
    expect(all.filter((j) => ours.has(j.id)).map((j) => j.id)).toEqual(expected);
  });

  it("refuses a cursor it did not hand out", async () => {
    expect((await call("GET", "/v1/jobs?cursor=bm9wZQ")).status).toBe(400);
    expect((await call("GET", "/v1/jobs?status=NOPE")).status).toBe(400);
  });
});
