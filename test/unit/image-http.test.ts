// http(s) image imports against local servers and an injected resolver: DNS rebinding (a name
// that answers differently the second time), redirects checked hop by hop, the maximum size
// counted while the bytes stream, and credentials kept out of every message.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, describe, it } from "node:test";
import { parseNetworks } from "../../src/controllers/node/address-policy.ts";
import type { ResolvedAddress } from "../../src/controllers/node/image-http.ts";
import { limitImageBytes } from "../../src/controllers/node/image-limits.ts";
import { ImageSourceError, type OpenOptions, openImage } from "../../src/controllers/node/image-source.ts";
import { redactUrls } from "../../src/controllers/node/url-redaction.ts";
import { closeAll, serve } from "../support/http-servers.ts";

const T = { timeout: 15_000 };
afterEach(closeAll);

/** A resolver that answers from ANSWERS in turn, recording each name it was asked. */
function scriptedResolver(...answers: ResolvedAddress[][]) {
  const asked: string[] = [];
  const resolve = async (hostname: string) => {
    asked.push(hostname);
    return answers[Math.min(asked.length - 1, answers.length - 1)]!;
  };
  return { asked, resolve };
}

const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** A server on ADDRESS:PORT counting the requests it got. */
async function listen(
  address: string,
  port: number,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ port: number; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(`${req.headers.host} ${req.url}`);
    handler(req, res);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(port, address, r));
  return { port: (server.address() as AddressInfo).port, requests };
}

async function drain(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}

async function refusal(work: Promise<unknown>): Promise<Error> {
  return work.then(
    () => assert.fail("the import went ahead"),
    (e: Error) => e,
  );
}

describe("DNS rebinding: one lookup per hop, connected to the address checked", () => {
  const body = randomBytes(4096);
  const image = (_req: IncomingMessage, res: ServerResponse) =>
    res.writeHead(200, { "content-length": body.length }).end(body);

  it(
    "a name that answers an allowed address, then loopback, is fetched from the allowed one",
    T,
    async () => {
      const checked = await listen("127.0.0.1", 0, image);
      const internal = await listen("127.0.0.2", checked.port, (_q, res) => res.end("SECRET"));
      const { asked, resolve } = scriptedResolver(
        [{ address: "127.0.0.1", family: 4 }],
        [{ address: "127.0.0.2", family: 4 }],
      );
      const options: OpenOptions = { allowedNetworks: parseNetworks("127.0.0.1/32"), resolve };
      const opened = await openImage(`http://images.example:${checked.port}/disk.img`, [], [], options);
      assert.deepEqual(Buffer.compare(await drain(opened.chunks), body), 0);
      assert.deepEqual(asked, ["images.example"], "resolved exactly once");
      assert.deepEqual(
        checked.requests,
        [`images.example:${checked.port} /disk.img`],
        "Host names the URL's host",
      );
      assert.deepEqual(internal.requests, [], "the second answer was never asked for, nor connected to");
    },
  );

  it(
    "a name that answers a public address first, loopback the second time, never reaches loopback",
    T,
    async () => {
      const local = await listen("127.0.0.1", 0, image);
      const { asked, resolve } = scriptedResolver(
        [{ address: "198.51.100.7", family: 4 }], // allowed here; nothing answers there
        [{ address: "127.0.0.1", family: 4 }],
      );
      const error = await refusal(
        openImage(`http://rebind.example:${local.port}/disk.img`, [], [], {
          allowedNetworks: parseNetworks("198.51.100.0/24"),
          resolve,
          deadlines: { headersTimeoutMs: 500 },
        }),
      );
      assert.ok(error instanceof ImageSourceError, String(error));
      assert.match(error.message, /^cannot fetch http:\/\/rebind\.example/);
      assert.deepEqual(asked, ["rebind.example"]);
      assert.deepEqual(local.requests, []);
    },
  );

  it("a name resolving to loopback is refused before any connection, by default", T, async () => {
    const local = await listen("127.0.0.1", 0, image);
    const { resolve } = scriptedResolver([
      { address: "::ffff:127.0.0.1", family: 6 },
      { address: "127.0.0.1", family: 4 },
    ]);
    const error = await refusal(openImage(`http://localhost.example:${local.port}/d`, [], [], { resolve }));
    assert.equal(
      error.message,
      `http://localhost.example:${local.port}/d: refused to connect: localhost.example does not resolve to an ` +
        "address images may come from. Images come only " +
        "from global unicast addresses unless the node's admin allows the range (agent.imageImport.allowedNetworks)",
    );
    assert.deepEqual(local.requests, []);
  });

  it(
    "checks and pins every redirect hop; refuses hops into refused ranges and other schemes",
    T,
    async () => {
      let target = "";
      const first = await listen("127.0.0.1", 0, (req, res) =>
        req.url === "/disk.img" ? res.writeHead(302, { location: target }).end() : image(req, res),
      );
      const { asked, resolve } = scriptedResolver([{ address: "127.0.0.1", family: 4 }]);
      const options: OpenOptions = { allowedNetworks: parseNetworks("127.0.0.1/32"), resolve };
      const url = `http://a.example:${first.port}/disk.img`;

      target = `http://b.example:${first.port}/real.img`;
      assert.equal((await drain((await openImage(url, [], [], options)).chunks)).length, body.length);
      assert.deepEqual(asked, ["a.example", "b.example"], "one lookup per hop");

      for (const [to, why] of [
        [`http://127.0.0.2:${first.port}/x`, /127\.0\.0\.2 is a loopback address/],
        [`http://[::ffff:127.0.0.2]:${first.port}/x`, /IPv4 127\.0\.0\.2\) is a loopback/],
        [`http://0x7f.2:${first.port}/x`, /127\.0\.0\.2 is a loopback/],
        [`http://169.254.169.254/latest/meta-data/`, /link-local/],
        ["file:///etc/shadow", /redirects to a file: URL/],
      ] as const) {
        target = to;
        assert.match((await refusal(openImage(url, [], [], options))).message, why, to);
      }
    },
  );
});

describe("the maximum image size", () => {
  const MiB = 2 ** 20;
  const loopback = { allowedNetworks: parseNetworks("127.0.0.0/8") };

  it("refuses a Content-Length over the maximum before reading the body", T, async () => {
    const url = await serve((_req, res) =>
      res.writeHead(200, { "content-length": 4 * MiB }).end(Buffer.alloc(4 * MiB)),
    );
    const error = await refusal(openImage(`${url}/big`, [], [], { ...loopback, maxBytes: MiB }));
    assert.equal(
      error.message,
      `${url}/big is ${4 * MiB} bytes, more than the maximum image size of 1 MiB this node allows (agent.imageImport.maxBytes)`,
    );
  });

  it("reads a response without Content-Length to its end when it stays within the maximum", T, async () => {
    const body = randomBytes(300 * 1024);
    const url = await serve((_req, res) => {
      res.writeHead(200); // chunked
      res.write(body.subarray(0, 1000));
      res.end(body.subarray(1000));
    });
    const opened = await openImage(`${url}/x`, [], [], { ...loopback, maxBytes: MiB });
    assert.equal(opened.length, undefined);
    assert.equal(Buffer.compare(await drain(opened.chunks), body), 0);
  });

  it("stops a response without Content-Length mid-stream the moment it passes the maximum", T, async () => {
    let sent = 0;
    let closedEarly = false;
    const url = await serve(async (_req, res) => {
      res.writeHead(200);
      res.on("close", () => {
        closedEarly = !res.writableFinished;
      });
      while (sent < 64 * MiB && !res.destroyed) {
        const ok = res.write(Buffer.alloc(64 * 1024, 1));
        sent += 64 * 1024;
        if (!ok)
          await new Promise<void>((r) => {
            const done = () => {
              res.off("drain", done).off("close", done);
              r();
            };
            res.on("drain", done).on("close", done);
          });
      }
      res.end();
    });
    const opened = await openImage(`${url}/endless`, [], [], { ...loopback, maxBytes: MiB });
    let received = 0;
    const error = await refusal(
      (async () => {
        for await (const c of opened.chunks) received += c.byteLength;
      })(),
    );
    assert.match(
      error.message,
      /stopped after \d+ bytes: the image is larger than the maximum image size of 1 MiB/,
    );
    assert.ok(received <= MiB, `${received} bytes handed on`);
    for (let i = 0; i < 50 && !closedEarly; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(closedEarly, "the connection was closed before the server finished");
    assert.ok(sent < 64 * MiB, `the server stopped after ${sent} bytes`);
  });

  it("counts what actually arrives: more bytes than announced is refused", async () => {
    async function* lying() {
      yield Buffer.alloc(600);
      yield Buffer.alloc(600); // announced 1000
    }
    const chunks = limitImageBytes(lying(), { shown: "http://x/y", maxBytes: MiB, length: 1000 });
    const error = await refusal(drain(chunks));
    assert.equal(
      error.message,
      "http://x/y: stopped after 1200 bytes: more than the 1000 bytes it announced",
    );
  });

  it("holds files on the node to the maximum, and reads only the bytes they had when opened", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lvo-import-"));
    try {
      const path = join(dir, "image.raw");
      writeFileSync(path, Buffer.alloc(2 * MiB));
      assert.match(
        (await refusal(openImage(path, [dir], [], { maxBytes: MiB }))).message,
        /is 2097152 bytes, more than the maximum image size of 1 MiB/,
      );
      const opened = await openImage(path, [dir], [], { maxBytes: 4 * MiB });
      appendFileSync(path, Buffer.alloc(MiB)); // grows after it was looked at
      assert.equal((await drain(opened.chunks)).length, 2 * MiB);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("credentials in image URLs", () => {
  it("are replaced in every URL of a message; nothing else changes", () => {
    assert.equal(redactUrls("http://user:s3cret@host.example/x.img"), "http://REDACTED@host.example/x.img");
    assert.equal(redactUrls("https://tok3n@host.example/x.img"), "https://REDACTED@host.example/x.img");
    const signed =
      "cannot fetch https://b.s3.example/i.qcow2?X-Amz-Credential=AKIA1%2F2&X-Amz-Signature=deadbeef&part=1: boom";
    const redacted = redactUrls(signed);
    assert.doesNotMatch(redacted, /AKIA1|deadbeef/);
    assert.match(redacted, /X-Amz-Signature=REDACTED/);
    assert.match(redacted, /part=1: boom$/);
    assert.match(
      redactUrls("see https://h.example/a?sig=abc&access_token=xyz"),
      /sig=REDACTED&access_token=REDACTED$/,
    );
    const plain = "fetching http://127.0.0.1:8080/image.qcow2 answered HTTP 404 Not Found";
    assert.equal(redactUrls(plain), plain);
    // Not parseable as a URL: cut up to the authority's last @.
    assert.equal(redactUrls("http://u:p@ss@[::1/x"), "http://REDACTED@[::1/x");
  });

  it("are used to log in, and kept out of the error", T, async () => {
    let authorization = "";
    const url = await serve((req, res) => {
      authorization = req.headers.authorization ?? "";
      res.writeHead(403).end();
    });
    const withCredentials = url.replace("http://", "http://alice:pa55word@");
    const error = await refusal(
      openImage(`${withCredentials}/x.img?token=t0ken`, [], [], {
        allowedNetworks: parseNetworks("127.0.0.0/8"),
      }),
    );
    assert.equal(authorization, `Basic ${Buffer.from("alice:pa55word").toString("base64")}`);
    assert.doesNotMatch(error.message, /pa55word|alice|t0ken/);
    assert.match(
      error.message,
      /^fetching http:\/\/REDACTED@127\.0\.0\.1:\d+\/x\.img\?token=REDACTED answered HTTP 403/,
    );
  });

  it("stay out of refusals and unreachable-host errors", T, async () => {
    const refused = await refusal(openImage("http://bob:hunter2@10.0.0.1/x.img", [], []));
    assert.doesNotMatch(refused.message, /hunter2|bob/);
    const { resolve } = scriptedResolver([]);
    const unresolved = await refusal(
      openImage("http://bob:hunter2@nowhere.example/x.img", [], [], {
        resolve: async () => {
          await resolve("nowhere.example");
          throw Object.assign(new Error("getaddrinfo ENOTFOUND nowhere.example"), { code: "ENOTFOUND" });
        },
      }),
    );
    assert.equal(
      unresolved.message,
      "http://REDACTED@nowhere.example/x.img: refused to connect: nowhere.example does not resolve to an " +
        "address images may come from. Images come only from global unicast addresses unless the node's " +
        "admin allows the range (agent.imageImport.allowedNetworks)",
    );
  });
});
