/**
 * The agent's WebSocket link against a real `ws` server on loopback: how it opens (and why it
 * does not), how replies find their requests, how pushed messages reach the agent, and how a
 * dead link is noticed. Waits are bounded promises on real events, never sleeps.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket as ServerSocket } from "ws";
import { SocketLink, UpgradeRefused, type LinkEvents } from "./socket-link.js";
import { WS_PING, WS_PONG, type LeasedJob } from "../protocol/agent.js";

const CREDENTIAL = "device-credential-for-the-test";
const WAIT_MS = 5_000;

/** Resolves with the first value `register` hands over, or fails after WAIT_MS. */
function within<T>(what: string, register: (done: (value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** A control plane stand-in: accepts upgrades on /v1/agent/ws, records what the agent sends. */
class FakeControlPlane {
  readonly http: Server = createServer((_req, res) => res.writeHead(404).end());
  readonly wss = new WebSocketServer({ noServer: true });
  readonly sockets: ServerSocket[] = [];
  readonly received: string[] = [];
  readonly upgrades: { url: string | undefined; authorization: string | undefined }[] = [];
  private listeners: ((text: string, socket: ServerSocket) => void)[] = [];
  /** HTTP status to refuse the upgrade with, or null to accept it. */
  refuseWith: number | null = null;
  answerPings = true;

  async start(): Promise<string> {
    this.http.on("upgrade", (req, socket, head) => {
      this.upgrades.push({ url: req.url, authorization: req.headers.authorization });
      if (this.refuseWith !== null) {
        socket.end(`HTTP/1.1 ${this.refuseWith} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        this.sockets.push(ws);
        ws.on("message", (data) => {
          const text = String(data);
          if (text === WS_PING && this.answerPings) ws.send(WS_PONG);
          this.received.push(text);
          for (const l of this.listeners) l(text, ws);
        });
      });
    });
    await new Promise<void>((resolve) => this.http.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.http.address() as AddressInfo).port}`;
  }

  /** The next message the agent sends that satisfies `match`. */
  nextMessage(match: (text: string) => boolean = () => true): Promise<{ text: string; socket: ServerSocket }> {
    return within("a message from the agent", (done) => {
      const listener = (text: string, socket: ServerSocket) => {
        if (!match(text)) return;
        this.listeners = this.listeners.filter((l) => l !== listener);
        done({ text, socket });
      };
      this.listeners.push(listener);
    });
  }

  /** Waits until the agent has sent `count` messages in all; answers them in order. */
  messagesReceived(count: number): Promise<string[]> {
    return within(`${count} messages from the agent`, (done) => {
      const check = () => (this.received.length >= count ? done(this.received.slice(0, count)) : setTimeout(check, 5));
      check();
    });
  }

  async stop() {
    for (const s of this.sockets) s.terminate();
    this.wss.close();
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }
}

/** Link events recorded in order, with a way to wait for the next one of a kind. */
function recordingEvents() {
  const seen: { kind: keyof LinkEvents; value: unknown }[] = [];
  let waiters: { kind: keyof LinkEvents; done: (v: unknown) => void }[] = [];
  const record = (kind: keyof LinkEvents) => (value: unknown) => {
    seen.push({ kind, value });
    for (const w of waiters.filter((w) => w.kind === kind)) w.done(value);
    waiters = waiters.filter((w) => w.kind !== kind);
  };
  const events: LinkEvents = { jobs: record("jobs"), cancel: record("cancel"), problem: record("problem"), deployments: record("deployments"), services: record("services"), fenced: record("fenced") };
  const next = (kind: keyof LinkEvents) => within<unknown>(`a ${kind} event`, (done) => waiters.push({ kind, done }));
  return { events, seen, next };
}

const job: LeasedJob = {
  jobId: "daaaaaaaaaaaaaaaa-aaaaaaaaaaaaaaaa",
  leaseToken: "lease-1",
  leaseExpiresAt: 1_000,
  attempt: 1,
  module: "0".repeat(64),
  function: "fibo",
  args: [12],
  timeoutMs: 1_000,
};

let server: FakeControlPlane;
let url: string;
const links: SocketLink[] = [];

beforeEach(async () => {
  server = new FakeControlPlane();
  url = await server.start();
});
afterEach(async () => {
  vi.useRealTimers();
  for (const l of links.splice(0)) l.close();
  await server.stop();
});

async function open(events: LinkEvents = recordingEvents().events, onClose: (code: number, reason: string) => void = () => undefined) {
  const link = await SocketLink.open(url, CREDENTIAL, events, onClose);
  links.push(link);
  return link;
}

describe("opening", () => {
  it("connects to /v1/agent/ws with the device credential as a bearer token", async () => {
    const link = await open();
    expect(link.isOpen).toBe(true);
    expect(server.upgrades).toEqual([{ url: "/v1/agent/ws", authorization: `Bearer ${CREDENTIAL}` }]);
  });

  it("rejects with UpgradeRefused and the status when the upgrade is answered with plain HTTP", async () => {
    server.refuseWith = 401;
    const opening = SocketLink.open(url, CREDENTIAL, recordingEvents().events, () => undefined);
    await expect(opening).rejects.toBeInstanceOf(UpgradeRefused);
    await expect(opening).rejects.toMatchObject({ status: 401 });
  });

  it("rejects with the network error (not UpgradeRefused) when nothing listens", async () => {
    await server.stop();
    const opening = SocketLink.open(url, CREDENTIAL, recordingEvents().events, () => undefined);
    await expect(opening).rejects.toMatchObject({ code: "ECONNREFUSED" });
    await expect(opening).rejects.not.toBeInstanceOf(UpgradeRefused);
    server = new FakeControlPlane(); // afterEach stops a fresh, unstarted one
    await server.start();
  });
});

describe("messages", () => {
  it("sends one JSON message per frame", async () => {
    const link = await open();
    const first = server.nextMessage();
    link.send({ t: "credit", free: 3 });
    expect(JSON.parse((await first).text)).toEqual({ t: "credit", free: 3 });
  });

  it("matches each reply to its request by id, whatever the order of the replies", async () => {
    const link = await open();
    const a = link.request<"started">({ t: "started", started: [], held: [] });
    const b = link.request<"started">({ t: "started", started: [], held: [] });
    const [first, second] = (await server.messagesReceived(2)).map((t) => JSON.parse(t) as { id: number });
    expect(first!.id).not.toBe(second!.id);
    const socket = server.sockets[0]!;
    socket.send(JSON.stringify({ t: "acked", id: second!.id, started: 2, held: 0 }));
    socket.send(JSON.stringify({ t: "acked", id: first!.id, started: 1, held: 0 }));
    expect(await a).toEqual({ t: "acked", id: first!.id, started: 1, held: 0 });
    expect(await b).toEqual({ t: "acked", id: second!.id, started: 2, held: 0 });
  });

  it("rejects a request that gets no answer within its timeout", async () => {
    const link = await open();
    await expect(link.request<"started">({ t: "started", started: [], held: [] }, 50)).rejects.toThrow(/no answer to started within 50 ms/);
  });

  it("hands pushed jobs, cancels and deployment changes to the agent", async () => {
    const recorded = recordingEvents();
    await open(recorded.events);
    const socket = server.sockets[0]!;
    const jobs = recorded.next("jobs");
    socket.send(JSON.stringify({ t: "jobs", jobs: [job] }));
    expect(await jobs).toEqual([expect.objectContaining({ jobId: job.jobId, leaseToken: "lease-1" })]);
    const cancel = recorded.next("cancel");
    socket.send(JSON.stringify({ t: "cancel", jobIds: [job.jobId] }));
    expect(await cancel).toEqual([job.jobId]);
    const deployments = recorded.next("deployments");
    socket.send(JSON.stringify({ t: "deployments", version: 7 }));
    expect(await deployments).toBe(7);
  });

  it("reports an error message and an unreadable message as problems, and keeps the link", async () => {
    const recorded = recordingEvents();
    const link = await open(recorded.events);
    const socket = server.sockets[0]!;
    let problem = recorded.next("problem");
    socket.send(JSON.stringify({ t: "error", message: "bad credit" }));
    expect(await problem).toBe("bad credit");
    problem = recorded.next("problem");
    socket.send(JSON.stringify({ t: "no-such-message" }));
    expect(await problem).toMatch(/unreadable message from the control plane/);
    problem = recorded.next("problem");
    socket.send("not json {");
    expect(await problem).toMatch(/unreadable message from the control plane: not json \{/);
    expect(link.isOpen).toBe(true);
  });
});

describe("closing", () => {
  it("tells the agent when the server closes the link, and fails requests still waiting", async () => {
    let onClose!: (v: [number, string]) => void;
    const closed = within<[number, string]>("the close callback", (done) => (onClose = done));
    const link = await open(recordingEvents().events, (code, reason) => onClose([code, reason]));
    const asked = server.nextMessage();
    const waiting = link.request<"started">({ t: "started", started: [], held: [] });
    (await asked).socket.close(4001, "replaced by a newer link");
    await expect(waiting).rejects.toThrow(/link closed \(4001\)/);
    expect(await closed).toEqual([4001, "replaced by a newer link"]);
    expect(link.isOpen).toBe(false);
  });

  it("a link closed by the agent fails its waiting requests at once and closes normally on the server", async () => {
    const link = await open();
    const serverSaw = within<number>("the server-side close", (done) => server.sockets[0]!.on("close", (code) => done(code)));
    const waiting = link.request<"started">({ t: "started", started: [], held: [] });
    link.close();
    await expect(waiting).rejects.toThrow(/link closed by the agent/);
    expect(await serverSaw).toBe(1000);
  });

  it("a new link can be opened after the old one closed (the agent's reconnect)", async () => {
    const first = await open();
    first.close();
    const second = await open();
    expect(second.isOpen).toBe(true);
    expect(server.upgrades).toHaveLength(2);
  });
});

describe("keepalive", () => {
  // Only the interval and the clock it reads are faked: sockets and bounded waits stay real.
  const fakeKeepaliveClock = () => vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });

  it("pings every 15 s and stays open while the server answers", async () => {
    fakeKeepaliveClock();
    let closed = false;
    const link = await open(recordingEvents().events, () => (closed = true));
    for (let round = 0; round < 4; round++) {
      const ping = server.nextMessage((t) => t === WS_PING);
      vi.advanceTimersByTime(15_000);
      await ping;
      // the pong is on its way back: a later `request` round-trip proves it has been read
      const ack = server.nextMessage((t) => t.includes('"started"')).then(({ text, socket }) => socket.send(JSON.stringify({ t: "acked", id: JSON.parse(text).id, started: 0, held: 0 })));
      await link.request<"started">({ t: "started", started: [], held: [] });
      await ack;
    }
    expect(link.isOpen).toBe(true);
    expect(closed).toBe(false);
  });

  it("drops a link whose server stopped answering pings, so the agent reconnects", async () => {
    fakeKeepaliveClock();
    server.answerPings = false;
    let onClose!: (code: number) => void;
    const closed = within<number>("the close callback", (done) => (onClose = done));
    const link = await open(recordingEvents().events, (code) => onClose(code));
    for (let round = 0; round < 2; round++) {
      const ping = server.nextMessage((t) => t === WS_PING);
      vi.advanceTimersByTime(15_000);
      await ping; // pinged (15 s, 30 s), no pong
    }
    vi.advanceTimersByTime(15_000); // 45 s without a pong: past 2.5 intervals
    expect(await closed).toBe(1006);
    expect(link.isOpen).toBe(false);
  });
});
