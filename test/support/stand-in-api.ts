// A small HTTP server standing in for kube-apiserver in unit tests: the real client (kube/http.ts)
// talks to it, so what the code under test sends, and what it makes of an answer, is real.
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { connectKube, type Kube } from "../../src/runtime/kube.ts";
import { kubeConfigFor } from "./http-servers.ts";

export interface StandInRequest {
  method: string;
  url: string;
  body: unknown;
  at: number;
}

export interface StandInApi {
  kube: Kube;
  requests: StandInRequest[];
  close(): Promise<void>;
}

/** Serves ANSWER's status and body for every request, recording each. */
export async function standInApi(
  answer: (req: StandInRequest) => { status: number; body: unknown },
): Promise<StandInApi> {
  const requests: StandInRequest[] = [];
  const server = createServer(async (req: IncomingMessage, res) => {
    let text = "";
    for await (const chunk of req) text += chunk;
    const seen = {
      method: req.method ?? "",
      url: req.url ?? "",
      body: text ? JSON.parse(text) : undefined,
      at: performance.now(),
    };
    requests.push(seen);
    const { status, body } = answer(seen);
    res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const kube = await connectKube(undefined, kubeConfigFor(url, {}));
  return {
    kube,
    requests,
    close: () => {
      kube.http.close();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A Kubernetes Status body for an error answer. */
export function statusBody(code: number, message: string) {
  return { kind: "Status", apiVersion: "v1", status: "Failure", code, message };
}
