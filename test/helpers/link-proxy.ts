/**
 * A proxy of the test's own between an agent and the control plane: HTTP and the agent's WebSocket
 * pass through, except what the test tells it to lose. A lost ack over HTTP is a reset connection;
 * over the WebSocket it is the connection dying with the message in it (what a flaky link does: TCP
 * never loses one message and keeps the connection).
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import WebSocket, { WebSocketServer } from "ws";

export interface AckMessage {
  started: unknown[];
  held: unknown[];
}

export interface LinkProxy {
  url: string;
  /** acks and lease renewals the proxy lost, in order */
  lost: AckMessage[];
  close(): Promise<void>;
}

export async function startLinkProxy(target: string, opts: { loseAck?: (ack: AckMessage) => boolean } = {}): Promise<LinkProxy> {
  const upstream = new URL(target);
  const lost: AckMessage[] = [];
  const lose = (ack: AckMessage) => {
    if (!opts.loseAck?.(ack)) return false;
    lost.push(ack);
    return true;
  };
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      if (req.url === "/v1/agent/acks" && body.length > 0) {
        const ack = JSON.parse(body.toString()) as Partial<AckMessage>;
        if (lose({ started: ack.started ?? [], held: ack.held ?? [] })) return req.socket.destroy();
      }
      const up = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      up.on("error", () => res.destroy());
      up.end(body);
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on("upgrade", (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (agentSide) => {
      const serverSide = new WebSocket(`ws://${upstream.host}${req.url}`, { headers: { authorization: req.headers.authorization ?? "", ...(req.headers["x-wasmvisor-epoch"] ? { "x-wasmvisor-epoch": String(req.headers["x-wasmvisor-epoch"]) } : {}) }, perMessageDeflate: false });
      const early: string[] = [];
      const cut = () => {
        agentSide.terminate();
        serverSide.terminate();
      };
      serverSide.on("open", () => {
        for (const m of early.splice(0)) serverSide.send(m);
      });
      serverSide.on("message", (data) => agentSide.send(String(data)));
      serverSide.on("close", cut);
      serverSide.on("error", cut);
      agentSide.on("close", cut);
      agentSide.on("error", cut);
      agentSide.on("message", (data) => {
        const text = String(data);
        if (text.startsWith("{")) {
          const msg = JSON.parse(text) as { t?: string } & Partial<AckMessage>;
          if (msg.t === "started" && lose({ started: msg.started ?? [], held: msg.held ?? [] })) return cut();
        }
        if (serverSide.readyState === WebSocket.OPEN) serverSide.send(text);
        else early.push(text);
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    lost,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
