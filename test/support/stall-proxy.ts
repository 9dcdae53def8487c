// A proxy in front of a unix socket (libvirtd's) or a TCP port (kube-apiserver's; TLS passes
// through untouched) that can go silent: while stalled it keeps
// every connection open and accepts new ones, but forwards nothing either way (what a hung
// daemon, or a network path that drops packets, looks like to the client). resume() delivers
// what was held back, in order, and connects the sockets accepted meanwhile.
import { rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";

interface Pair {
  client: Socket;
  upstream?: Socket;
  /** Bytes held back while stalled, per direction. */
  toUpstream: Buffer[];
  toClient: Buffer[];
}

/** A unix socket path, or a TCP port on 127.0.0.1. */
type Endpoint = string | number;

export class StallProxy {
  readonly path: Endpoint;
  private readonly target: Endpoint;
  private server?: Server;
  private readonly pairs = new Set<Pair>();
  private stalled = false;
  /** Connections accepted so far (a reconnecting client opens new ones). */
  accepted = 0;

  constructor(path: Endpoint, target: Endpoint) {
    this.path = path;
    this.target = target;
  }

  async listen(): Promise<void> {
    if (typeof this.path === "string") rmSync(this.path, { force: true });
    this.server = createServer((client) => {
      this.accepted++;
      const pair: Pair = { client, toUpstream: [], toClient: [] };
      this.pairs.add(pair);
      client.on("error", () => client.destroy());
      client.on("close", () => {
        this.pairs.delete(pair);
        pair.upstream?.destroy();
      });
      client.on("data", (chunk: Buffer) => {
        if (this.stalled || !pair.upstream) pair.toUpstream.push(chunk);
        else pair.upstream.write(chunk);
      });
      if (!this.stalled) this.connectUpstream(pair);
    });
    const server = this.server;
    await new Promise<void>((resolve) =>
      typeof this.path === "string"
        ? server.listen(this.path, resolve)
        : server.listen(this.path, "127.0.0.1", resolve),
    );
  }

  /** From now on nothing passes, and new connections are accepted but not answered. */
  stall() {
    this.stalled = true;
  }

  /** Delivers what was held back and forwards again. */
  resume() {
    this.stalled = false;
    for (const pair of this.pairs) {
      if (pair.client.destroyed) continue;
      if (!pair.upstream) {
        this.connectUpstream(pair);
        continue;
      }
      this.flush(pair);
    }
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream?.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }

  private connectUpstream(pair: Pair) {
    const upstream =
      typeof this.target === "string"
        ? connect(this.target)
        : connect({ port: this.target, host: "127.0.0.1" });
    pair.upstream = upstream;
    upstream.on("error", () => upstream.destroy());
    upstream.on("close", () => pair.client.destroy());
    upstream.on("data", (chunk: Buffer) => {
      if (this.stalled) pair.toClient.push(chunk);
      else pair.client.write(chunk);
    });
    this.flush(pair); // a connecting socket buffers writes, in order
  }

  private flush(pair: Pair) {
    if (this.stalled || !pair.upstream) return;
    for (const chunk of pair.toUpstream.splice(0)) pair.upstream.write(chunk);
    for (const chunk of pair.toClient.splice(0)) pair.client.write(chunk);
  }
}
