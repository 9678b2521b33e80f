/**
 * The event stream of one namespace (GET /v1/events), in two roles by name
 * (platform/stubs.ts):
 *
 * - a relay (`events/<namespace>/relay/<k>/<of>`) takes batches from the device objects
 *   whose ids hash to it, keeps them in its outbox and forwards them to the hub in batches
 *   coalesced over RELAY_COALESCE_MS: the hub sees at most `of / RELAY_COALESCE_MS`
 *   requests a second however many devices there are (docs/scale.md, "Events");
 * - the hub (`events/<namespace>`) numbers each event (its SSE id: monotonic within the
 *   namespace), keeps a bounded replay log (EVENT_REPLAY: the newest 10,000 and at most an
 *   hour) and writes each event to the open streams whose filter it passes.
 *
 * A stream is a ReadableStream handed to the Worker over RPC. A client that reads too
 * slowly (MAX_BACKLOG unread events) is closed, and resumes from its Last-Event-ID.
 */
import { SqlObject } from "./sql-object.js";
import { EventOutbox, EVENT_OUTBOX_TABLE, type OutboxEvent } from "./event-outbox.js";
import { EVENT_REPLAY, matchesFilter, type EventFilter, type FleetEvent } from "../protocol/events.js";
import { iso } from "../core/time.js";
import type { Env } from "../platform/env.js";
import { eventHubStub } from "../platform/stubs.js";
import { settingsFrom } from "../platform/settings.js";

/** A relay coalesces this long before one request to the hub. */
export const RELAY_COALESCE_MS = 100;
/** An open stream is sent a comment this often (proxies close idle connections). */
const KEEPALIVE_MS = 15_000;
/** A stream this many events behind its reader is closed (the client resumes with Last-Event-ID). */
const MAX_BACKLOG = 2_000;

const HUB_SCHEMA = `
CREATE TABLE events (
  id         INTEGER PRIMARY KEY,
  kind       TEXT NOT NULL,
  device     TEXT,
  job        TEXT,
  deployment TEXT,
  data       TEXT NOT NULL,
  at         INTEGER NOT NULL
);
CREATE INDEX events_by_time ON events (at);
CREATE TABLE owner (id INTEGER PRIMARY KEY CHECK (id = 1), namespace TEXT NOT NULL, role TEXT NOT NULL, last_id INTEGER NOT NULL DEFAULT 0);`;

type EventRow = OutboxEvent & { id: number };
type Stream = { writer: WritableStreamDefaultWriter<Uint8Array>; filter: EventFilter; closeAt: ReturnType<typeof setTimeout> | null };

const encoder = new TextEncoder();

export class EventsObject extends SqlObject<Env> {
  private readonly streams = new Set<Stream>();
  private keepalive: ReturnType<typeof setInterval> | null = null;
  private owner: { namespace: string; role: string } | undefined;
  private readonly outbox = new EventOutbox(
    this.sql,
    () => {
      const ns = this.owner?.namespace;
      return ns === undefined ? undefined : (events) => eventHubStub(this.env, ns).append(ns, events);
    },
    { clock: this.clock, coalesceMs: RELAY_COALESCE_MS, retryBaseMs: settingsFrom(this.env).retryBaseMs, wakeBy: (at) => void this.ctx.storage.setAlarm(at) },
  );

  protected migrations() {
    return [EVENT_OUTBOX_TABLE + HUB_SCHEMA];
  }

  protected override async load() {
    this.owner = this.one<{ namespace: string; role: string }>("SELECT namespace, role FROM owner WHERE id = 1");
    this.outbox.resume();
  }

  /** The first call names this object's namespace and role; any later call for another is refused. */
  private claim(namespace: string, role: "relay" | "hub"): boolean {
    if (!this.owner) {
      this.run`INSERT INTO owner (id, namespace, role) VALUES (1, ${namespace}, ${role})`;
      this.owner = { namespace, role };
    }
    return this.owner.namespace === namespace && this.owner.role === role;
  }

  // ---- relay ---------------------------------------------------------------------------

  /** A device object's batch: kept, then forwarded to the hub with others. */
  async relay(namespace: string, events: OutboxEvent[]): Promise<number> {
    if (!this.claim(namespace, "relay")) throw new Error("events relay: namespace mismatch");
    this.ctx.storage.transactionSync(() => this.outbox.addAll(events));
    return events.length;
  }

  override async alarm() {
    this.outbox.resume();
  }

  // ---- hub -----------------------------------------------------------------------------

  /** Numbers and stores a batch, trims the replay window, and writes to the open streams. */
  async append(namespace: string, events: OutboxEvent[]): Promise<number> {
    if (!this.claim(namespace, "hub")) throw new Error("events hub: namespace mismatch");
    const rows: EventRow[] = [];
    this.ctx.storage.transactionSync(() => {
      // The last id given is kept beside the owner: ids never restart, even when the window is empty.
      let id = this.one<{ n: number }>("SELECT last_id AS n FROM owner WHERE id = 1")!.n;
      for (const e of events) {
        id++;
        this.run`INSERT INTO events (id, kind, device, job, deployment, data, at) VALUES (${id}, ${e.kind}, ${e.device}, ${e.job}, ${e.deployment}, ${e.data}, ${e.at})`;
        rows.push({ ...e, id });
      }
      this.trim(id);
    });
    for (const row of rows) {
      const event = this.view(row);
      for (const s of this.streams) if (matchesFilter(event, s.filter)) this.send(s, event);
    }
    return rows.length;
  }

  private trim(lastId: number) {
    const cutoff = this.clock.now() - EVENT_REPLAY.maxAgeMs;
    this.run("DELETE FROM events WHERE id <= ? OR (at < ? AND id < ?)", lastId - EVENT_REPLAY.maxEvents, cutoff, lastId);
    this.run("UPDATE owner SET last_id = ? WHERE id = 1", lastId);
  }

  /**
   * A stream of this namespace's events that pass `filter`: first those after `after`
   * (Last-Event-ID) still in the window, or the newest `tail` when there is no `after`;
   * then live ones. `waitMs`: close after this long (0: replay only); null: stay open.
   */
  async subscribe(namespace: string, filter: EventFilter, after: number | null, tail: number, waitMs: number | null): Promise<ReadableStream<Uint8Array>> {
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const writer = writable.getWriter();
    const mine = this.owner === undefined || (this.owner.namespace === namespace && this.owner.role === "hub");
    const stream: Stream = { writer, filter, closeAt: null };
    void writer.write(encoder.encode("retry: 2000\n\n")).catch(() => undefined);
    if (!mine) {
      void writer.close().catch(() => undefined);
      return readable;
    }
    for (const row of this.replay(filter, after, tail, stream)) this.send(stream, this.view(row));
    if (waitMs === 0) {
      void writer.close().catch(() => undefined);
      return readable;
    }
    this.streams.add(stream);
    if (waitMs !== null) stream.closeAt = setTimeout(() => this.drop(stream), waitMs);
    this.keepalive ??= setInterval(() => {
      for (const s of this.streams) this.write(s, ": keepalive\n\n");
      if (this.streams.size === 0 && this.keepalive !== null) {
        clearInterval(this.keepalive);
        this.keepalive = null;
      }
    }, KEEPALIVE_MS);
    return readable;
  }

  /** Open streams (for tests and `top`). */
  async openStreams(): Promise<number> {
    return this.streams.size;
  }

  private replay(filter: EventFilter, after: number | null, tail: number, stream: Stream): EventRow[] {
    if (after !== null) {
      const oldest = this.one<{ n: number | null }>("SELECT MIN(id) AS n FROM events")?.n ?? null;
      // Some of what the client missed has left the window: it is told, then given what is left.
      if (oldest !== null && after < oldest - 1) this.write(stream, `event: gap\ndata: ${JSON.stringify({ after, oldest })}\n\n`);
      return this.all<EventRow>("SELECT * FROM events WHERE id > ? ORDER BY id", after).filter((r) => matchesFilter(r, filter));
    }
    if (tail <= 0) return [];
    const out: EventRow[] = [];
    // Newest first until `tail` pass the filter, in pages (the window holds at most EVENT_REPLAY.maxEvents).
    let before = Number.MAX_SAFE_INTEGER;
    while (out.length < tail) {
      const page = this.all<EventRow>("SELECT * FROM events WHERE id < ? ORDER BY id DESC LIMIT 500", before);
      if (page.length === 0) break;
      for (const r of page) if (out.length < tail && matchesFilter(r, filter)) out.push(r);
      before = page[page.length - 1]!.id;
    }
    return out.reverse();
  }

  private view(r: EventRow): FleetEvent {
    return { id: String(r.id), kind: r.kind, at: iso(r.at)!, namespace: this.owner!.namespace, device: r.device, job: r.job, deployment: r.deployment, data: JSON.parse(r.data) as Record<string, unknown> };
  }

  private send(s: Stream, e: FleetEvent) {
    this.write(s, `id: ${e.id}\ndata: ${JSON.stringify(e)}\n\n`);
  }

  private write(s: Stream, text: string) {
    if ((s.writer.desiredSize ?? 0) < -MAX_BACKLOG) return this.drop(s);
    s.writer.write(encoder.encode(text)).catch(() => this.drop(s));
  }

  private drop(s: Stream) {
    if (!this.streams.delete(s) && s.closeAt === null) return;
    if (s.closeAt !== null) clearTimeout(s.closeAt);
    s.closeAt = null;
    void s.writer.close().catch(() => undefined);
  }
}

/** Registers this class as the one behind the EVENTS binding (see src/platform/env.ts). */
declare module "../platform/env.js" {
  interface DurableObjectClasses {
    EVENTS: EventsObject;
  }
}
