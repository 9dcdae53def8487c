// Which addresses an http(s) image import may reach: every non-global range in the spellings a
// URL or a DNS answer can use, the admin's allow-list, and the agent's settings (a malformed
// CIDR or size stops it at start-up with one line; the chart's schema agrees with the agent).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { REPO_ROOT } from "../../src/cmd/local/tools.ts";
import {
  ipLiteralOf,
  judgeAddress,
  NetworkListError,
  parseAddress,
  parseNetworks,
} from "../../src/controllers/node/address-policy.ts";
import {
  DEFAULT_IMAGE_MAX_BYTES,
  ImportConfigError,
  importLimitsFromEnv,
} from "../../src/controllers/node/image-limits.ts";

/** What the WHATWG URL parser makes of HOST, then the verdict on that literal. */
function judgeHost(host: string, allowed = parseNetworks("")) {
  const hostname = new URL(`http://${host}/disk.img`).hostname;
  const literal = ipLiteralOf(hostname);
  assert.ok(literal, `${host} → ${hostname} is an IP literal`);
  return judgeAddress(literal, allowed);
}

/** Spellings of an IPv4 address: dotted, one integer, hex, mapped and compatible IPv6. */
function v4Spellings(dotted: string): string[] {
  const n = dotted.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
  return [
    dotted,
    String(n),
    `0x${n.toString(16)}`,
    `[::ffff:${dotted}]`,
    `[::${dotted}]`,
    `[::FFFF:${dotted}]`,
  ];
}

describe("address policy: only global unicast by default", () => {
  const refusedV4: Array<[string, RegExp]> = [
    ["0.0.0.0", /'this network'|unspecified/], // ::0.0.0.0 is ::
    ["0.1.2.3", /'this network'/],
    ["10.1.2.3", /private/],
    ["100.64.0.1", /carrier-grade NAT/],
    ["100.127.255.255", /carrier-grade NAT/],
    ["127.0.0.1", /loopback/],
    ["127.255.255.254", /loopback/],
    ["169.254.169.254", /link-local/],
    ["172.16.0.1", /private/],
    ["172.31.255.255", /private/],
    ["192.0.0.8", /IETF/],
    ["192.0.2.1", /documentation/],
    ["192.168.1.1", /private/],
    ["198.18.0.1", /benchmarking/],
    ["198.19.255.255", /benchmarking/],
    ["198.51.100.7", /documentation/],
    ["203.0.113.9", /documentation/],
    ["224.0.0.1", /multicast/],
    ["239.255.255.250", /multicast/],
    ["240.0.0.1", /reserved/],
    ["255.255.255.255", /broadcast/],
  ];
  for (const [address, what] of refusedV4) {
    it(`refuses ${address} however it is written`, () => {
      for (const spelling of v4Spellings(address)) {
        const verdict = judgeHost(spelling);
        assert.equal(verdict.allowed, false, spelling);
        assert.match(!verdict.allowed ? verdict.reason : "", what, spelling);
      }
    });
  }

  it("refuses loopback in the short and octal IPv4 forms URLs accept", () => {
    for (const spelling of ["127.1", "0177.0.0.1", "0x7f.1", "127.0.0.1.", "2130706433", "0x7f000001"])
      assert.match((judgeHost(spelling) as { reason: string }).reason, /127\.0\.0\.1 is a loopback/);
  });

  const refusedV6: Array<[string, RegExp]> = [
    ["::", /unspecified/],
    ["::1", /loopback/],
    ["64:ff9b::808:808", /NAT64/], // 8.8.8.8 through NAT64: still refused
    ["64:ff9b:1::1", /local NAT64/],
    ["100::1", /discard/],
    ["2001::1", /Teredo/],
    ["2001:1ff::1", /IETF/],
    ["2001:db8::1", /documentation/],
    ["2002:808:808::1", /6to4/], // 6to4 of 8.8.8.8: still refused
    ["3fff::1", /documentation/],
    ["fc00::1", /unique local/],
    ["fd12:3456::1", /unique local/],
    ["fe80::1", /link-local/],
    ["febf::1", /link-local/],
    ["fec0::1", /site-local/],
    ["ff02::1", /multicast/],
    ["4000::1", /outside 2000::\/3/],
    ["::ffff:0:808:808", /outside 2000::\/3/], // IPv4-translated (SIIT): not ours to reach
  ];
  for (const [address, what] of refusedV6) {
    it(`refuses [${address}] however it is written`, () => {
      const value = parseAddress(address)!.value;
      const full = [...Array(8).keys()]
        .map((i) => ((value >> BigInt(112 - 16 * i)) & 0xffffn).toString(16).padStart(4, "0"))
        .join(":");
      for (const spelling of [address, address.toUpperCase(), full]) {
        const verdict = judgeHost(`[${spelling}]`);
        assert.equal(verdict.allowed, false, spelling);
        assert.match(!verdict.allowed ? verdict.reason : "", what, spelling);
      }
      // As a DNS answer (not canonicalised by a URL parser) too.
      assert.equal(judgeAddress(address, []).allowed, false);
    });
  }

  it("judges IPv4 inside IPv6 as the IPv4 address, and says so", () => {
    const verdict = judgeAddress("::ffff:127.0.0.1", []);
    assert.deepEqual(verdict, {
      allowed: false,
      reason: "::ffff:127.0.0.1 (IPv4 127.0.0.1) is a loopback address (127.0.0.0/8)",
    });
    assert.equal(judgeAddress("::ffff:7f00:1", []).allowed, false);
    assert.equal(judgeAddress("::a9fe:a9fe", []).allowed, false, "compatible 169.254.169.254");
  });

  it("allows global unicast at the edges of the refused ranges", () => {
    for (const host of [
      "8.8.8.8",
      "1.1.1.1",
      "9.255.255.255",
      "11.0.0.0",
      "100.63.255.255",
      "100.128.0.0",
      "172.15.255.255",
      "172.32.0.0",
      "198.17.255.255",
      "198.20.0.0",
      "223.255.255.255",
      "[2606:4700::1111]",
      "[2001:200::1]",
      "[2a00:1450:4001::1]",
      "[::ffff:8.8.8.8]",
    ])
      assert.deepEqual(judgeHost(host), { allowed: true }, host);
  });

  it("the admin's allow-list opens exactly its ranges, in every spelling", () => {
    const allowed = parseNetworks(" 127.0.0.0/8, ::1/128 ,64:ff9b::/96,");
    for (const spelling of v4Spellings("127.0.0.1"))
      assert.deepEqual(judgeHost(spelling, allowed), { allowed: true });
    assert.deepEqual(judgeHost("[::1]", allowed), { allowed: true });
    assert.deepEqual(judgeHost("[64:ff9b::a00:1]", allowed), { allowed: true });
    assert.equal(judgeHost("10.0.0.1", allowed).allowed, false);
    assert.equal(judgeHost("[::2]", allowed).allowed, false);
    assert.equal(judgeHost("169.254.169.254", allowed).allowed, false);
    // Host bits are ignored: 10.1.2.3/8 is 10.0.0.0/8.
    assert.deepEqual(judgeHost("10.200.0.1", parseNetworks("10.1.2.3/8")), { allowed: true });
  });

  it("refuses a malformed CIDR, naming the entry", () => {
    for (const bad of [
      "10.0.0.0",
      "10.0.0.0/33",
      "10.0.0/8",
      "fe80::/129",
      "abc/8",
      "10.0.0.0/8/1",
      "/8",
      "10.0.0.0/-1",
      "fe80::1%eth0/64",
      "10.0.0.0/ 8",
    ]) {
      assert.throws(
        () => parseNetworks(`192.168.0.0/16,${bad}`),
        (err: unknown) => err instanceof NetworkListError && err.entry === bad.trim(),
        bad,
      );
    }
  });
});

describe("the agent's import settings", () => {
  it("reads the allow-list and the maximum; defaults to none and 64 GiB", () => {
    assert.deepEqual(importLimitsFromEnv({}), { allowedNetworks: [], maxBytes: 64 * 2 ** 30 });
    assert.equal(DEFAULT_IMAGE_MAX_BYTES, 64 * 2 ** 30);
    const limits = importLimitsFromEnv({
      IMAGE_IMPORT_ALLOWED_NETWORKS: "10.0.0.0/8",
      IMAGE_MAX_BYTES: "8Mi",
    });
    assert.equal(limits.maxBytes, 8 * 2 ** 20);
    assert.equal(limits.allowedNetworks[0]?.text, "10.0.0.0/8");
  });

  it("names the variable and the entry it cannot use", () => {
    const bad = (env: Record<string, string>) => {
      try {
        importLimitsFromEnv(env);
      } catch (err) {
        assert.ok(err instanceof ImportConfigError);
        return [err.variable, err.entry, err.message];
      }
      assert.fail("accepted");
    };
    assert.deepEqual(bad({ IMAGE_IMPORT_ALLOWED_NETWORKS: "10.0.0.0/8,10.0.0.300/8" }).slice(0, 2), [
      "IMAGE_IMPORT_ALLOWED_NETWORKS",
      "10.0.0.300/8",
    ]);
    for (const max of ["0", "lots", "-1Gi", "1Gb"])
      assert.deepEqual(bad({ IMAGE_MAX_BYTES: max }).slice(0, 2), ["IMAGE_MAX_BYTES", max], max);
  });

  it("the chart's schema accepts exactly the CIDRs and sizes the agent accepts", () => {
    const schema = JSON.parse(
      readFileSync(join(REPO_ROOT, "helm/libvirt-operator/values.schema.json"), "utf8"),
    );
    const imports = schema.properties.agent.properties.imageImport.properties;
    const cidrPatterns = (imports.allowedNetworks.items.anyOf as Array<{ pattern: string }>).map(
      (p) => new RegExp(p.pattern),
    );
    const schemaTakes = (cidr: string) => cidrPatterns.some((p) => p.test(cidr));
    const agentTakes = (cidr: string) => {
      try {
        parseNetworks(cidr);
        return true;
      } catch {
        return false;
      }
    };
    const good = [
      "0.0.0.0/0",
      "10.0.0.0/8",
      "127.0.0.1/32",
      "255.255.255.255/32",
      "::/0",
      "::1/128",
      "fd00::/8",
    ];
    const more = [
      "2001:db8:0:0:1:0:0:1/64",
      "64:ff9b::/96",
      "fe80::/10",
      "1:2:3:4:5:6:7::/112",
      "::ffff:0:0/96",
    ];
    for (const cidr of [...good, ...more])
      assert.deepEqual([schemaTakes(cidr), agentTakes(cidr)], [true, true], cidr);
    const bad = [
      "10.0.0.0",
      "10.0.0/8",
      "10.0.0.0/33",
      "256.0.0.0/8",
      "010.0.0.0/8",
      "fe80::/129",
      "fe80:::1/64",
    ];
    for (const cidr of [...bad, "1:2:3:4:5:6:7:8:9/64", "g::/16", "10.0.0.0/8/1", " 10.0.0.0/8", ""])
      assert.deepEqual(
        [schemaTakes(cidr), agentTakes(cidr) && cidr.trim() === cidr && cidr !== ""],
        [false, false],
        cidr,
      );
    const size = new RegExp(imports.maxBytes.pattern);
    for (const ok of ["64Gi", "1", "512Mi", "2T"])
      assert.ok(size.test(ok) && importLimitsFromEnv({ IMAGE_MAX_BYTES: ok }));
    for (const no of ["0", "lots", "-1Gi", "1Gb"]) assert.equal(size.test(no), false, no);
  });

  it("the agent stops at start-up with one fatal line naming the bad entry (exit 1, no stack)", {
    timeout: 90_000,
  }, () => {
    const run = spawnSync(process.execPath, [join(REPO_ROOT, "src", "cmd", "agent.ts")], {
      env: {
        ...process.env,
        IMAGE_IMPORT_ALLOWED_NETWORKS: "127.0.0.0/8,10.0.0/8",
        KUBECONFIG: "/nonexistent",
      },
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(run.status, 1, run.stderr);
    const lines = run.stdout.trim().split("\n");
    assert.equal(lines.length, 1, run.stdout);
    const line = JSON.parse(lines[0]!);
    assert.equal(line.level, "fatal");
    assert.equal(line.variable, "IMAGE_IMPORT_ALLOWED_NETWORKS");
    assert.equal(line.entry, "10.0.0/8");
    assert.match(line.msg, /"10\.0\.0\/8" is not a CIDR/);
    assert.equal(line.stack, undefined);
    assert.equal(run.stderr, "");
  });
});
