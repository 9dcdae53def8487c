// A unix-socket proxy in front of libvirtd's socket: tests cut every connection through it
// (the daemon "goes away") and open it again, without restarting the real daemon.
import { rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";

export class SocketProxy {
  readonly path: string;
  private readonly target: string;
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  constructor(path: string, target: string) {
    this.path = path;
    this.target = target;
  }

  async listen(): Promise<void> {
    rmSync(this.path, { force: true });
    this.server = createServer((client) => {
      const upstream = connect(this.target);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(this.path, resolve));
  }

  /** Stops accepting and cuts every open connection. */
  async cut(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }
}
