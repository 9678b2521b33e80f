/**
 * The agent link: how jobs and notices reach the device's agent. Either one WebSocket
 * (hibernation API; the newest open socket is the one pushed to, up to the credit the
 * agent grants) or a long poll (one open poll per agent). It knows nothing of jobs'
 * rows: `dispatch` asks the caller to lease as many as the link can take.
 */
import type { Clock } from "../core/clock.js";
import { FENCED_CLOSE_CODE, type LeasedJob, type ServerMessage } from "../protocol/agent.js";

const AGENT_TAG = "agent";
/** Kept on the socket itself (it survives hibernation): what the agent can take, when it connected, and its session's epoch. */
type SocketState = { credit: number; acceptedAt: number; epoch: number };

export interface Poller {
  max: number;
  deliver(jobs: LeasedJob[]): void;
}

export class AgentLink {
  private pollers: Poller[] = [];
  /** gives a command its id and expiry as it goes out (bounded commands, device-commands.ts) */
  stamp: (msg: ServerMessage) => ServerMessage = (msg) => msg;

  constructor(private readonly ctx: DurableObjectState, private readonly clock: Clock) {}

  /** Told of every notice sent (the audit records the commands among them). */
  observer: ((msg: ServerMessage) => void) | null = null;

  /** A new connection of session `epoch` (the current one) replaces any older (possibly dead) one; answers the client end. */
  accept(epoch: number): WebSocket {
    // Each socket is stamped later than any it replaces (even within one millisecond): the newest is the one pushed to.
    let acceptedAt = this.clock.now();
    for (const old of this.ctx.getWebSockets(AGENT_TAG)) {
      acceptedAt = Math.max(acceptedAt, this.socketState(old).acceptedAt + 1);
      old.close(4000, "replaced by a newer connection");
    }
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [AGENT_TAG]);
    server.serializeAttachment({ credit: 0, acceptedAt, epoch } satisfies SocketState);
    return client;
  }

  /** The epoch of the session a socket was opened in. */
  epochOf(ws: WebSocket): number {
    return this.socketState(ws).epoch;
  }

  /** Tells a socket of an older session that a newer one took over, and closes it (4009). */
  fence(ws: WebSocket, current: number) {
    const epoch = this.epochOf(ws);
    this.send(ws, { t: "fenced", epoch, current, message: `agent session ${epoch} was taken over by session ${current} (another agent process holds this device's credential)` });
    try {
      ws.close(FENCED_CLOSE_CODE, "a newer agent session took this device over");
    } catch {
      // already closed
    }
  }

  /** A newer session opened: every socket of an older one is fenced, every open poll answered (its next request is refused). */
  fenceOlderThan(current: number) {
    for (const ws of this.ctx.getWebSockets(AGENT_TAG)) if (this.epochOf(ws) < current) this.fence(ws, current);
    this.releasePolls();
  }

  /** Closes every socket (the credential changed) and answers every poll empty. */
  disconnect(code: number, reason: string) {
    for (const ws of this.ctx.getWebSockets(AGENT_TAG)) ws.close(code, reason);
    this.releasePolls();
  }

  /** Answers every open poll with no jobs (the agent polls again, and learns what changed). */
  releasePolls() {
    for (const p of this.pollers.splice(0)) p.deliver([]);
  }

  /**
   * The socket to push to: the newest one still open. A replaced socket stays listed
   * while its close is unanswered (a half-dead link), and anything sent there is lost
   * until its lease expires.
   */
  socket(): WebSocket | undefined {
    let newest: { ws: WebSocket; acceptedAt: number } | undefined;
    for (const ws of this.ctx.getWebSockets(AGENT_TAG)) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      const acceptedAt = this.socketState(ws).acceptedAt;
      if (!newest || acceptedAt > newest.acceptedAt) newest = { ws, acceptedAt };
    }
    return newest?.ws;
  }

  private socketState(ws: WebSocket): SocketState {
    const s = ws.deserializeAttachment() as Partial<SocketState> | null;
    return { credit: s?.credit ?? 0, acceptedAt: s?.acceptedAt ?? 0, epoch: s?.epoch ?? 0 };
  }

  credit(ws: WebSocket): number {
    return this.socketState(ws).credit;
  }

  setCredit(ws: WebSocket, credit: number) {
    ws.serializeAttachment({ ...this.socketState(ws), credit: Math.max(0, credit) } satisfies SocketState);
  }

  send(ws: WebSocket, msg: ServerMessage) {
    try {
      ws.send(JSON.stringify(this.stamp(msg)));
    } catch {
      // A dead socket: leases cover whatever it was carrying.
    }
  }

  /** Sends to the agent's socket, if it has one open. */
  notify(msg: ServerMessage) {
    const socket = this.socket();
    if (!socket) return;
    this.send(socket, msg);
    this.observer?.(msg);
  }

  /** Answers the socket's close (jobs pushed on it keep their leases: they expire and come back if nobody reports). */
  closed(ws: WebSocket, code: number) {
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, "closed");
    } catch {
      // already closed
    }
  }

  /**
   * A long poll: jobs at once if `leased` has any (or no wait is asked), else the first
   * jobs dispatched within `waitMs`, else none. One agent per device keeps one poll open:
   * a new poll means any older one is dead.
   */
  poll(waitMs: number, max: number, lease: (max: number) => LeasedJob[]): Promise<LeasedJob[]> {
    this.releasePolls();
    const jobs = lease(max);
    if (jobs.length > 0 || waitMs <= 0) return Promise.resolve(jobs);
    return new Promise((resolve) => {
      const poller: Poller = {
        max,
        deliver: (delivered) => {
          clearTimeout(timer);
          this.pollers = this.pollers.filter((p) => p !== poller);
          resolve(delivered);
        },
      };
      const timer = setTimeout(() => poller.deliver([]), waitMs);
      this.pollers.push(poller);
    });
  }

  /** Hands leased jobs to the agent: pushed over its socket up to its credit, else to a waiting poll. Answers the ids leased. */
  dispatch(lease: (max: number) => LeasedJob[]): string[] {
    const socket = this.socket();
    if (socket) {
      const credit = this.credit(socket);
      if (credit <= 0) return [];
      const jobs = lease(credit);
      if (jobs.length === 0) return [];
      this.setCredit(socket, credit - jobs.length);
      this.send(socket, { t: "jobs", jobs });
      return jobs.map((j) => j.jobId);
    }
    const poller = this.pollers[0];
    if (!poller) return [];
    const jobs = lease(poller.max);
    if (jobs.length > 0) poller.deliver(jobs);
    return jobs.map((j) => j.jobId);
  }

  /**
   * The fast path for one new job: when a socket has credit, `push` records the job as
   * leased (false: it may not be pushed now) and it is sent in the same turn. The row is
   * written before the message is sent: the output gate then holds the message until the
   * write commits, so a job the control plane never stored can never run.
   */
  pushOne(push: () => LeasedJob | null): boolean {
    const socket = this.socket();
    if (!socket) return false;
    const credit = this.credit(socket);
    if (credit <= 0) return false;
    const job = push();
    if (!job) return false;
    this.send(socket, { t: "jobs", jobs: [job] });
    this.setCredit(socket, credit - 1);
    return true;
  }
}
