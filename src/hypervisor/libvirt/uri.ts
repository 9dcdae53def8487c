// Pure: a libvirt connection URI → where to connect and the name the daemon should open,
// following libvirt's remote driver (driver[+transport]://[host[:port]]/path[?params]).

export const DEFAULT_SOCKET = "/var/run/libvirt/libvirt-sock";
export const DEFAULT_RO_SOCKET = "/var/run/libvirt/libvirt-sock-ro";
export const DEFAULT_TCP_PORT = 16509;

/** Query parameters that only steer the transport; they are not sent to the daemon. */
const TRANSPORT_PARAMS = new Set([
  "name",
  "socket",
  "command",
  "netcat",
  "keyfile",
  "no_verify",
  "no_tty",
  "pkipath",
  "known_hosts",
  "known_hosts_verify",
  "sshauth",
  "mode",
  "proxy",
]);

export type Endpoint = { transport: "unix"; path: string } | { transport: "tcp"; host: string; port: number };

export interface ParsedUri {
  driver: string;
  endpoint: Endpoint;
  /** What connect-open receives: the URI without transport and transport-only parameters. */
  name: string;
}

export function parseLibvirtUri(uri: string, options: { readOnly?: boolean } = {}): ParsedUri {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new Error(`invalid libvirt URI "${uri}": expected e.g. qemu:///system or qemu+tcp://host/system`);
  }
  const scheme = url.protocol.replace(/:$/, "");
  const [driver = "", transport] = scheme.split("+", 2);
  if (!/^[a-z][a-z0-9]*$/.test(driver))
    throw new Error(`invalid libvirt URI "${uri}": bad driver "${driver}"`);
  const host = url.hostname;
  const effectiveTransport = transport ?? (host ? "tls" : "unix");

  const kept = new URLSearchParams();
  for (const [k, v] of url.searchParams) if (!TRANSPORT_PARAMS.has(k)) kept.append(k, v);
  const query = kept.toString();
  const name = url.searchParams.get("name") ?? `${driver}://${url.pathname}${query ? `?${query}` : ""}`;

  let endpoint: Endpoint;
  switch (effectiveTransport) {
    case "unix": {
      if (host) throw new Error(`invalid libvirt URI "${uri}": the unix transport takes no host`);
      const path = url.searchParams.get("socket") ?? (options.readOnly ? DEFAULT_RO_SOCKET : DEFAULT_SOCKET);
      if (!path.startsWith("/"))
        throw new Error(`invalid libvirt URI "${uri}": socket must be an absolute path`);
      endpoint = { transport: "unix", path };
      break;
    }
    case "tcp":
      if (!host) throw new Error(`invalid libvirt URI "${uri}": the tcp transport needs a host`);
      endpoint = { transport: "tcp", host, port: url.port ? Number(url.port) : DEFAULT_TCP_PORT };
      break;
    default:
      throw new Error(
        `libvirt URI "${uri}": transport "${effectiveTransport}" is not supported (use unix or tcp)`,
      );
  }
  return { driver, endpoint, name };
}
