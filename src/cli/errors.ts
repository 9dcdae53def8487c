// Failures and how they are printed: the plugin's own as kubectl prints its own ("error: …",
// exit code 1), the API server's as "Error from server (Reason): …". No imports: help and usage
// errors are answered without loading the HTTP client.

/** The cluster's state does not allow what was asked (a snapshot of another VM, a frozen VM …). */
export class PluginError extends Error {
  override name = "PluginError";
}

/** The work a write started failed, or did not finish in time (--wait). */
export class WaitError extends PluginError {
  override name = "WaitError";
}

/** Kubernetes Status body of a failed request, as far as we read it. */
interface StatusBody {
  kind?: string;
  reason?: string;
  message?: string;
}

function statusBody(body: unknown): StatusBody | undefined {
  if (typeof body === "string") {
    try {
      return statusBody(JSON.parse(body));
    } catch {
      return undefined;
    }
  }
  return body && typeof body === "object" ? (body as StatusBody) : undefined;
}

/** The HTTP status of an API server's answer that client-node turned into an error. */
export function httpStatusOf(err: unknown): number | undefined {
  return err && typeof err === "object" && "code" in err && typeof err.code === "number"
    ? err.code
    : undefined;
}

/** A network error's code, on the error or (undici's "fetch failed") on its cause. */
function networkCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 4; depth++) {
    if ("code" in e && typeof e.code === "string") return e.code;
    e = "cause" in e ? e.cause : undefined;
  }
  return undefined;
}

/**
 * The line kubectl prints for ERR: "Error from server (Reason): message" for an answer of the
 * API server, "error: message" for anything else (usage, connection, kubeconfig).
 */
export function formatError(err: unknown): string {
  if (httpStatusOf(err) !== undefined && err && typeof err === "object" && "body" in err) {
    const status = statusBody(err.body);
    const message = status?.message || `the server answered HTTP ${httpStatusOf(err)}`;
    return status?.reason
      ? `Error from server (${status.reason}): ${message}`
      : `Error from server: ${message}`;
  }
  const message = err instanceof Error ? err.message : String(err);
  const code = networkCode(err);
  if (code === "ECONNREFUSED")
    return `error: the connection to the server was refused - did you specify the right host or port? (${message})`;
  if (code && message === "fetch failed") return `error: cannot reach the API server: ${code}`;
  return `error: ${message}`;
}
