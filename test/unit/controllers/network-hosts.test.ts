// oneAtATime: one DHCP sync of a network at a time, so a read of its entries never overtakes a change.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { oneAtATime } from "../../../src/controllers/node/network-hosts.ts";
import type { LibvirtClient } from "../../../src/hypervisor/libvirt/index.ts";

describe("oneAtATime", () => {
  it("runs one work per network at a time, in order; other networks and failures block nothing", async () => {
    const libvirt = {} as LibvirtClient;
    const log: string[] = [];
    const work =
      (name: string, ms: number, fail = false) =>
      async () => {
        log.push(`${name} start`);
        await sleep(ms);
        log.push(`${name} end`);
        if (fail) throw new Error(name);
        return name;
      };
    const a = oneAtATime(libvirt, "default", work("a", 30, true));
    const b = oneAtATime(libvirt, "default", work("b", 1));
    const other = oneAtATime(libvirt, "other", work("o", 1));
    await assert.rejects(a, /a/);
    assert.equal(await b, "b");
    assert.equal(await other, "o");
    assert.deepEqual(
      log.filter((l) => !l.startsWith("o")),
      ["a start", "a end", "b start", "b end"],
    );
    assert.ok(log.indexOf("o end") < log.indexOf("a end"), "another network waits for nothing");
  });
});
