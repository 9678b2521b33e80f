/**
 * An events relay takes a batch from each device object (docs/scale.md, "Events"). Taking one must
 * cost the same whatever is still waiting in its outbox for the hub: a relay holding a backlog used
 * to re-read every waiting row on each batch (stamping rows that already carried their time), so a
 * busy fleet made every later batch slower.
 */
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { runInDurableObject } from "./helpers.js";
import type { OutboxEvent } from "../../src/durable/event-outbox.js";

const event = (i: number): OutboxEvent => ({ kind: "job.succeeded", device: "d-1", job: `j-${i}`, deployment: null, data: "{}", at: 1_700_000_000_000 + i });

describe("an events relay", () => {
  it("takes a batch reading a bounded number of rows, however large its backlog", async () => {
    const relay = env.EVENTS.get(env.EVENTS.idFromName("events/ns-relay-cost/relay/0/1"));
    const rowsRead = await runInDurableObject(relay, async (obj, state) => {
      // The backlog and the next batch arrive in one turn: the hub cannot take any of it in between.
      await obj.relay("ns-relay-cost", Array.from({ length: 2_000 }, (_, i) => event(i)));
      const sql = state.storage.sql;
      const exec = sql.exec.bind(sql);
      const cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];
      (sql as { exec: unknown }).exec = (text: string, ...params: SqlStorageValue[]) => {
        const cursor = exec(text, ...params);
        cursors.push(cursor);
        return cursor;
      };
      await obj.relay("ns-relay-cost", [event(2_000)]);
      (sql as { exec: unknown }).exec = exec;
      return cursors.reduce((n, c) => n + c.rowsRead, 0);
    });
    expect(rowsRead).toBeLessThan(10);
  });
});
