/**
 * Hole #16: a batch of 1,000 jobs shares one millisecond, and ids that were only random
 * within it sometimes collided: the device object's insert failed on its UNIQUE index and
 * POST /v1/jobs/batch answered 500. The device object now mints its jobs' ids.
 */
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { call, registerDevice, uploadModule } from "./helpers.js";
import type { DeviceObject } from "../../src/durable/device-object.js";

describe("job ids under bulk submission", () => {
  it("are all distinct when every job of many batches and single submissions is minted at one instant", async () => {
    const { deviceId } = await registerDevice("bulk");
    const hello = await uploadModule("hello");
    const stub = env.DEVICES.get(env.DEVICES.idFromName(deviceId));
    const instant = Date.UTC(2026, 10, 27, 12, 0, 0);
    await runInDurableObject(stub, (obj: DeviceObject) => obj.clock.set(instant));

    const job = { device: deviceId, module: hello, function: "greet", start: false };
    const ids: string[] = [];
    for (let b = 0; b < 8; b++) {
      const res = await call("POST", "/v1/jobs/batch", { json: { jobs: Array.from({ length: 1000 }, () => job) } });
      expect(res.status).toBe(202);
      ids.push(...(res.body.jobs as { id: string }[]).map((j) => j.id));
    }
    for (let i = 0; i < 20; i++) {
      const res = await call("POST", "/v1/jobs", { json: job });
      expect(res.status).toBe(202);
      ids.push(res.body.id as string);
    }
    expect(new Set(ids).size).toBe(8 * 1000 + 20);
    // All minted in the pinned millisecond: the id's time part is the same for every one.
    expect(new Set(ids.map((id) => id.slice(18, 28))).size).toBe(1);
    for (const id of [ids[0]!, ids[4321]!, ids.at(-1)!]) expect((await call("GET", `/v1/jobs/${id}`)).body).toMatchObject({ id, state: "CREATED" });
  });

  it("answers a mixed batch in the order it was given, each job on its own device", async () => {
    const a = (await registerDevice("a")).deviceId;
    const b = (await registerDevice("b")).deviceId;
    const hello = await uploadModule("hello");
    const devices = [a, b, b, a, b, a, a];
    const res = await call("POST", "/v1/jobs/batch", { json: { jobs: devices.map((device, i) => ({ device, module: hello, function: "shout", args: [i + 1], start: false })) } });
    expect(res.status).toBe(202);
    const refs = res.body.jobs as { id: string; device: string }[];
    expect(refs.map((r) => r.device)).toEqual(devices);
    for (const [i, r] of refs.entries()) expect((await call("GET", `/v1/jobs/${r.id}`)).body.args).toEqual([i + 1]);
  });
});
