/**
 * The agent's end of the push transport: one WebSocket to its device object.
 * Requests that need an answer (results, heartbeats) are matched by id; a
 * keepalive detects a dead link that TCP would not notice for minutes.
 */
import WebSocket from "ws";
import { EPOCH_HEADER, ServerMessage, WS_PING, WS_PONG, type AgentMessage, type CommandRef, type LeasedJob } from "../protocol/agent.js";

type Reply = Extract<ServerMessage, { id: number }>;
type Pending = { resolve(m: Reply): void; reject(e: Error): void; timer: NodeJS.Timeout };
/** Messages answered by id: those that always carry one, and acks (which may). */
type Request = Extract<AgentMessage, { id: number }> | Extract<AgentMessage, { t: "started" }> | Extract<AgentMessage, { t: "command-acks" }>;

/**
 * The server (or something in front of it) answered the upgrade with plain HTTP: WebSockets do not
 * get through here. Anything else that stops a link from opening (refused, reset, timed out) says
 * nothing about WebSockets: the server may just be down.
 */
export class UpgradeRefused extends Error {
  constructor(readonly status: number) {
    super(`WebSocket upgrade refused: HTTP ${status}`);
  }
}

export interface LinkEvents {
  /** `cmd`: the bounded command the message is (id and expiry), when the control plane sent one */
  jobs(jobs: LeasedJob[], cmd?: CommandRef): void;
  cancel(jobIds: string[], cmd?: CommandRef): void;
  problem(message: string): void;
  /** the desired deployments changed (to `version`) */
  deployments(version: number, cmd?: CommandRef): void;
  /** the desired services changed (to `version`) */
  services(version: number): void;
  /** a generic bounded command (services, rollouts) */
  command?(kind: string, body: unknown, cmd: CommandRef): void;
  /** a newer agent session took this device over: this process must stop */
  fenced(message: string): void;
}

const KEEPALIVE_MS = 15_000;
const REQUEST_TIMEOUT_MS = 15_000;

export class SocketLink {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private keepalive: NodeJS.Timeout | null = null;
  private lastPong = Date.now();

  private constructor(private readonly ws: WebSocket, private readonly events: LinkEvents) {}

  /** Opens the link; resolves once it is open, rejects if it cannot be opened (blocked, refused, unauthorized). */
  static open(server: string, credential: string, events: LinkEvents, onClose: (code: number, reason: string) => void, epoch: number | null = null): Promise<SocketLink> {
    const url = server.replace(/^http/, "ws") + "/v1/agent/ws";
    return new Promise((resolve, reject) => {
      const headers = { authorization: `Bearer ${credential}`, ...(epoch !== null ? { [EPOCH_HEADER]: String(epoch) } : {}) };
      const ws = new WebSocket(url, { headers, handshakeTimeout: 10_000, perMessageDeflate: false });
      const link = new SocketLink(ws, events);
      let opened = false;
      ws.on("open", () => {
        opened = true;
        link.startKeepalive();
        resolve(link);
      });
      ws.on("unexpected-response", (req, res) => {
        reject(new UpgradeRefused(res.statusCode ?? 0));
        res.resume();
        req.destroy();
      });
      ws.on("error", (e) => {
        if (!opened) reject(e);
      });
      ws.on("message", (data) => link.onMessage(String(data)));
      ws.on("close", (code, reason) => {
        link.shutdown(new Error(`link closed (${code})`));
        if (opened) onClose(code, reason.toString());
      });
    });
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(msg: Exclude<AgentMessage, { id: number }>) {
    this.ws.send(JSON.stringify(msg));
  }

  request<T extends Request["t"]>(msg: Omit<Extract<AgentMessage, { t: T }>, "id">, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer to ${msg.t} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...msg, id }), (err) => {
        if (!err) return;
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      });
    });
  }

  close() {
    this.ws.close(1000, "agent stopping");
    this.shutdown(new Error("link closed by the agent"));
  }

  private onMessage(text: string) {
    if (text === WS_PONG) {
      this.lastPong = Date.now();
      return;
    }
    const parsed = ServerMessage.safeParse(parseJson(text));
    if (!parsed.success) return this.events.problem(`unreadable message from the control plane: ${text.slice(0, 200)}`);
    const msg = parsed.data;
    switch (msg.t) {
      case "jobs":
        return this.events.jobs(msg.jobs, msg.cmd);
      case "cancel":
        return this.events.cancel(msg.jobIds, msg.cmd);
      case "command":
        return this.events.command?.(msg.kind, msg.body, msg.cmd);
      case "error":
        return this.events.problem(msg.message);
      case "deployments":
        return this.events.deployments(msg.version, msg.cmd);
      case "services":
        return this.events.services(msg.version);
      case "fenced":
        return this.events.fenced(msg.message);
      default: {
        const p = this.pending.get(msg.id);
        if (!p) return;
        clearTimeout(p.timer);
        this.pending.delete(msg.id);
        p.resolve(msg);
      }
    }
  }

  private startKeepalive() {
    this.keepalive = setInterval(() => {
      if (Date.now() - this.lastPong > 2.5 * KEEPALIVE_MS) {
        this.ws.terminate(); // silent peer: let the agent reconnect
        return;
      }
      this.ws.send(WS_PING);
    }, KEEPALIVE_MS);
    this.keepalive.unref();
  }

  private shutdown(reason: Error) {
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = null;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(reason);
    }
    this.pending.clear();
  }
}

/** Text that is not JSON at all is as unreadable as JSON of the wrong shape: a throw here would escape ws's handler and end the agent. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
