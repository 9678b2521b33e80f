/**
 * The job index stays exact across a device object's restart and whatever order its
 * batches arrive in (issue 9, hole 5).
 */
import { describe, expect, it } from "vitest";
import { abortAllDurableObjects, env } from "cloudflare:test";
import { call, registerDevice, sleep, submit, uploadModule } from "./helpers.js";
import { jobIndexStub } from "../../src/platform/stubs.js";

type Listed = { id: string; state: string };

/** Every page of the listing for `query`, followed with the cursor. */
async function listAll(query: string): Promise<Listed[]> {
  const all: Listed[] = [];
  let cursor: string | null = null;
  do {
    const res: { status: number; body: { jobs: Listed[]; nextCursor: string | null } } = await call("GET", `/v1/jobs?${query}&limit=2${cursor ? `&cursor=${cursor}` : ""}`);
    expect(res.status).toBe(200);
    all.push(...res.body.jobs);
    cursor = res.body.nextCursor;
  } while (cursor);
  return all;
}

/** The index is fed asynchronously (tens of ms): wait until it shows what we expect. */
async function listed(query: string, until: (jobs: Listed[]) => boolean): Promise<Listed[]> {
  for (let i = 0; i < 100; i++) {
    const all = await listAll(query);
    if (until(all)) return all;
    await sleep(50);
  }
  throw new Error(`the index never showed the expected jobs for ${query}: ${JSON.stringify(await listAll(query))}`);
}

describe("the job index across restarts and reordering", () => {
  it("lists every change made after the device object restarts, even when its last sent change was a delete", async () => {
    const dev = await registerDevice("index-restart");
    const digest = await uploadModule("math");
    const first = (await submit(dev.deviceId, digest, "add32", [1, 2])).body.id as string;
    expect((await call("POST", `/v1/jobs/${first}/cancel`)).status).toBe(200);
    expect((await call("DELETE", `/v1/jobs/${first}`)).status).toBe(200);
    // The delete went out: nothing of this device is listed, and its object holds no job row nor tombstone.
    await listed(`device=${dev.deviceId}`, (jobs) => jobs.length === 0);
    await sleep(100); // let the feed record what the index acknowledged

    await abortAllDurableObjects(); // the device object starts over from its storage

    const later: string[] = [];
    for (let i = 0; i < 3; i++) later.push((await submit(dev.deviceId, digest, "add32", [i, 0])).body.id as string);
    expect((await call("POST", `/v1/jobs/${later[0]}/cancel`)).status).toBe(200);
    const after = await listed(`device=${dev.deviceId}`, (jobs) => jobs.length === 3 && jobs[0]!.state === "CANCELED");
    expect(after.map((j) => j.id)).toEqual(later);
    expect(after.map((j) => j.state)).toEqual(["CANCELED", "QUEUED", "QUEUED"]);
  });

  it("never moves a job's state backwards when an older batch arrives after a newer one", async () => {
    const device = "dzzzzzzzzzzzzzzz2";
    const job = `${device}-aaaaaaaaaaaaaaaa`;
    const gone = `${device}-aaaaaaaaaaaaaaab`;
    const index = jobIndexStub(env, device);
    const row = (id: string, state: string, changeSeq: number) => ({ job_id: id, state, function: "f", module: "m", created_at: 1_000, updated_at: 2_000, change_seq: changeSeq });
    // Newer first (same millisecond, as a batch often is), then the older one retried late.
    await index.apply(device, "default", [row(job, "SUCCEEDED", 7), row(gone, "QUEUED", 5)]);
    await index.apply(device, "default", [row(gone, "DELETED", 8)]);
    await index.apply(device, "default", [row(job, "QUEUED", 3), row(job, "RUNNING", 6), row(gone, "RUNNING", 6)]);
    const jobs = await listAll(`device=${device}`);
    expect(jobs).toEqual([expect.objectContaining({ id: job, state: "SUCCEEDED" })]);
  });
});
