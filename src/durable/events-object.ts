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
 * A stream is a ReadableStream handed to the Worker over RPC. Its replay is written in
 * pages, each after the reader took the one before (back-pressure: a replay of the whole
 * window to a slow reader loses nothing); only then does the stream take live events. A
 * client that reads live events too slowly (MAX_BACKLOG_BYTES unread) is closed after what
 * it was sent, and resumes from its Last-Event-ID. A namespace's hub holds at most
 * MAX_STREAMS_PER_HUB streams, and one credential at most MAX_STREAMS_PER_KEY of them.
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
/** A stream this many bytes behind its reader is closed (the client resumes with Last-Event-ID). */
export const MAX_BACKLOG_BYTES = 1 << 20;
/** Rows per replay page: one chunk, written once the reader took the previous one. */
const REPLAY_PAGE = 500;
/** Open streams per credential (API key id, or session's key id) at one hub. */
export const MAX_STREAMS_PER_KEY = 10;
/** Open streams per namespace hub. */
export const MAX_STREAMS_PER_HUB = 200;

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
type Stream = {
  writer: WritableStreamDefaultWriter<Uint8Array>;
  filter: EventFilter;
  holder: string;
  /** the Worker's name for it, to end it by (unsubscribe) */
  key: string;
  closeAt: ReturnType<typeof setTimeout> | null;
  /** taking live events (false while its replay is still being written) */
  live: boolean;
  closed: boolean;
};

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
      for (const s of this.streams) if (s.live && matchesFilter(event, s.filter)) this.send(s, event);
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
   * `holder` (the credential's key id) may hold MAX_STREAMS_PER_KEY streams here; past
   * that, or past MAX_STREAMS_PER_HUB, the answer is a refusal, not a stream.
   */
  async subscribe(namespace: string, filter: EventFilter, after: number | null, tail: number, waitMs: number | null, holder = "", key = ""): Promise<ReadableStream<Uint8Array> | { refused: string }> {
    const mine = this.owner === undefined || (this.owner.namespace === namespace && this.owner.role === "hub");
    if (mine && waitMs !== 0) {
      if (this.streams.size >= MAX_STREAMS_PER_HUB) return { refused: `this namespace has ${MAX_STREAMS_PER_HUB} open event streams` };
      let held = 0;
      for (const s of this.streams) if (s.holder === holder) held++;
      if (held >= MAX_STREAMS_PER_KEY) return { refused: `this credential has ${MAX_STREAMS_PER_KEY} open event streams: close one first` };
    }
    // Queued bytes, not chunks: a live event is one chunk, a replay page another.
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>(undefined, new ByteLengthQueuingStrategy({ highWaterMark: 64 * 1024 }));
    const writer = writable.getWriter();
    const stream: Stream = { writer, filter, holder, key, closeAt: null, live: false, closed: false };
    void writer.write(encoder.encode("retry: 2000\n\n")).catch(() => undefined);
    if (!mine) {
      void writer.close().catch(() => undefined);
      return readable;
    }
    // Counted from now (the replay included); held against the caps while it replays.
    this.streams.add(stream);
    if (waitMs !== null && waitMs > 0) stream.closeAt = setTimeout(() => this.drop(stream), waitMs);
    void this.replayThenFollow(stream, after, tail, waitMs === 0).catch(() => this.drop(stream));
    this.keepalive ??= setInterval(() => {
      for (const s of this.streams) if (s.live) this.write(s, ": keepalive\n\n");
      if (this.streams.size === 0 && this.keepalive !== null) {
        clearInterval(this.keepalive);
        this.keepalive = null;
      }
    }, KEEPALIVE_MS);
    return readable;
  }

  /** The Worker ends a stream it named (its reader went away, or its credential ended): its place is free at once. */
  async unsubscribe(namespace: string, key: string): Promise<boolean> {
    if (key === "" || (this.owner !== undefined && (this.owner.namespace !== namespace || this.owner.role !== "hub"))) return false;
    for (const s of this.streams) if (s.key === key) return (this.drop(s), true);
    return false;
  }

  /** Open streams (for tests and `top`). */
  async openStreams(): Promise<number> {
    return this.streams.size;
  }

  /**
   * Writes the replay in pages, each once the reader has taken the one before, reading the
   * table afresh each time (events appended meanwhile are in a later page); when a page
   * comes back empty the stream turns live in the same turn, so no event falls between.
   */
  private async replayThenFollow(s: Stream, after: number | null, tail: number, thenClose: boolean) {
    let cursor: number;
    if (after === null) {
      const rows = this.tail(s.filter, tail);
      if (rows.length) s.writer.write(encoder.encode(rows.map((r) => this.frame(this.view(r))).join(""))).catch(() => this.drop(s));
      cursor = this.one<{ n: number }>("SELECT last_id AS n FROM owner WHERE id = 1")?.n ?? 0;
    } else cursor = after;
    for (;;) {
      await s.writer.ready;
      if (s.closed) return;
      const oldest = this.one<{ n: number | null }>("SELECT MIN(id) AS n FROM events")?.n ?? null;
      // Some of what the client missed has left the window: it is told, then given what is left.
      let text = "";
      if (oldest !== null && cursor < oldest - 1) {
        text += `event: gap\ndata: ${JSON.stringify({ after: cursor, oldest })}\n\n`;
        cursor = oldest - 1;
      }
      const page = this.all<EventRow>("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", cursor, REPLAY_PAGE);
      for (const r of page) if (matchesFilter(r, s.filter)) text += this.frame(this.view(r));
      if (text) s.writer.write(encoder.encode(text)).catch(() => this.drop(s));
      if (page.length === 0) break;
      cursor = page[page.length - 1]!.id;
    }
    if (thenClose) return this.drop(s);
    s.live = true;
  }

  private tail(filter: EventFilter, tail: number): EventRow[] {
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

  private frame(e: FleetEvent): string {
    return `id: ${e.id}\ndata: ${JSON.stringify(e)}\n\n`;
  }

  private send(s: Stream, e: FleetEvent) {
    this.write(s, this.frame(e));
  }

  /** A live write; a reader this far behind is closed after what it was sent (it resumes from its last id). */
  private write(s: Stream, text: string) {
    if (s.closed) return;
    if ((s.writer.desiredSize ?? 0) < -MAX_BACKLOG_BYTES) return this.drop(s);
    s.writer.write(encoder.encode(text)).catch(() => this.drop(s));
  }

  private drop(s: Stream) {
    if (s.closed) return;
    s.closed = true;
    s.live = false;
    this.streams.delete(s);
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
