// Opening a libvirt connection: socket connect, authentication, connect-open and the feature
// probes, under one deadline. A daemon (or a proxy, or a half-dead TCP peer) that accepts the
// socket and never answers must fail the attempt, or the client's reconnect loop would wait on
// it forever instead of trying again.
import { connect as netConnect, type Socket } from "node:net";
import { type ConnectionOptions, RpcConnection } from "./connection.ts";
import {
  AuthType,
  ConnectFlags,
  FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER,
  FEATURE_PROGRAM_KEEPALIVE,
} from "./constants.ts";
import { CallTimeoutError, ConnectionClosedError } from "./errors.ts";
import { P } from "./protocol.ts";
import { type Endpoint, parseLibvirtUri } from "./uri.ts";

export interface ServerFeatures {
  networkUpdateCorrectOrder: boolean;
}

export interface Opened {
  conn: RpcConnection;
  features: ServerFeatures;
}

export interface HandshakeOptions extends ConnectionOptions {
  uri: string;
  readOnly?: boolean;
}

function describeEndpoint(endpoint: Endpoint): string {
  return endpoint.transport === "unix" ? endpoint.path : `${endpoint.host}:${endpoint.port}`;
}

function openSocket(endpoint: Endpoint, track: (socket: Socket) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket =
      endpoint.transport === "unix" ? netConnect(endpoint.path) : netConnect(endpoint.port, endpoint.host);
    track(socket);
    socket.once("connect", () => resolve(socket));
    socket.once("error", (err) =>
      reject(
        new ConnectionClosedError(
          `cannot connect to libvirt at ${describeEndpoint(endpoint)}: ${err.message}`,
        ),
      ),
    );
  });
}

/**
 * Connects to the daemon OPTIONS.uri names and opens the connection. Past DEADLINE_MS (0 = none)
 * the socket is destroyed and the attempt rejects with CallTimeoutError naming the step it was
 * stuck in.
 */
export async function handshake(options: HandshakeOptions, deadlineMs: number): Promise<Opened> {
  const parsed = parseLibvirtUri(options.uri, { readOnly: options.readOnly });
  const where = describeEndpoint(parsed.endpoint);
  const progress: { step: string; socket?: Socket } = { step: "socket connect" };
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    if (deadlineMs <= 0) return;
    timer = setTimeout(() => {
      // Destroying the socket also fails the step still waiting (its promise is raced below).
      progress.socket?.destroy();
      reject(
        new CallTimeoutError(
          `libvirt handshake with ${where} did not finish within its deadline of ${deadlineMs} ms (stuck in ${progress.step})`,
          { procedure: progress.step, deadlineMs },
        ),
      );
    }, deadlineMs);
  });
  try {
    return await Promise.race([steps(options, parsed, progress), expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function steps(
  options: HandshakeOptions,
  parsed: ReturnType<typeof parseLibvirtUri>,
  progress: { step: string; socket?: Socket },
): Promise<Opened> {
  const socket = await openSocket(parsed.endpoint, (s) => {
    progress.socket = s;
  });
  const conn = new RpcConnection(socket, options);
  // Each step waits without a deadline of its own: the handshake's deadline bounds them all.
  const unbounded = { timeoutMs: 0 };
  try {
    progress.step = P.AuthList.name;
    const { types } = await conn.call(P.AuthList, undefined, unbounded);
    if (!types.includes(AuthType.None)) {
      if (!types.includes(AuthType.Polkit)) {
        throw new Error(
          `libvirt at ${options.uri} asks for authentication we do not speak (types ${types.join(",")})`,
        );
      }
      progress.step = P.AuthPolkit.name;
      await conn.call(P.AuthPolkit, undefined, unbounded);
    }
    progress.step = P.ConnectOpen.name;
    const flags = options.readOnly ? ConnectFlags.ReadOnly : 0;
    await conn.call(P.ConnectOpen, { name: parsed.name, flags }, unbounded);
    progress.step = P.ConnectSupportsFeature.name;
    const supports = async (feature: number) =>
      (await conn.call(P.ConnectSupportsFeature, { feature }, unbounded)).supported !== 0;
    if (await supports(FEATURE_PROGRAM_KEEPALIVE)) conn.startKeepalive();
    const features = {
      networkUpdateCorrectOrder: await supports(FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER),
    };
    return { conn, features };
  } catch (err) {
    conn.close();
    throw err;
  }
}
