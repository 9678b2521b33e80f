/**
 * A TCP proxy of the tests' own between an agent and the control plane, able to
 * cut every connection, delay bytes, and blackhole the link: connections stay open
 * (new ones are accepted too) but no byte moves either way, and neither side is told,
 * as on a dead mobile link. When the link comes back the held bytes flow again, as TCP
 * retransmission would deliver them; whatever gave up meanwhile has to notice on its own.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export class TcpProxy {
  private server: Server | null = null;
  private readonly pairs = new Set<[Socket, Socket]>();
  private holding = false;
  private delayMs = 0;
  port = 0;

  constructor(private readonly target: () => { host: string; port: number }) {}

  /** A proxy listening (on a free port) in front of `url`, the control plane's. */
  static async inFrontOf(url: string): Promise<TcpProxy> {
    const target = new URL(url);
    const proxy = new TcpProxy(() => ({ host: target.hostname, port: Number(target.port) }));
    await proxy.listen();
    return proxy;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async listen(port = 0): Promise<void> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((res, rej) => {
      this.server!.once("error", rej);
      this.server!.listen(port, "127.0.0.1", () => res());
    });
    this.port = (this.server.address() as { port: number }).port;
  }

  private accept(client: Socket) {
    const { host, port } = this.target();
    const upstream = connect(port, host);
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const forward = (from: Socket, to: Socket) =>
      from.on("data", (chunk) => {
        if (this.delayMs > 0) setTimeout(() => to.destroyed || to.write(chunk), this.delayMs);
        else to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    if (this.holding) for (const s of pair) s.pause();
    const close = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
  }

  /** Resets every open connection (both ends see it at once). New ones are accepted. */
  cut(): number {
    const n = this.pairs.size;
    for (const [a, b] of [...this.pairs]) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    this.pairs.clear();
    return n;
  }

  /** From now on every byte each way waits `ms` (order kept: timers of equal delay fire in order). */
  delay(ms: number) {
    this.delayMs = ms;
  }

  /** Stops (or restarts) all traffic: reads pause, so kernel buffers fill and senders stall. */
  blackhole(on: boolean) {
    this.holding = on;
    for (const pair of this.pairs) for (const s of pair) (on ? s.pause() : s.resume());
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
