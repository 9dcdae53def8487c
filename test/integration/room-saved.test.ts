// A guest saved to a file (a snapshot's save, cut short by an agent restart) comes back with all
// it had: the node's room counts it while it lies saved, in a recount as after an event, so no
// other start takes its vCPUs meanwhile. Against libvirtd's test driver (a hypervisor in memory).
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import pino from "pino";
import { NodeRoom } from "../../src/controllers/node/node-room.ts";
import { keepRoomCurrent, resyncRoom } from "../../src/controllers/node/room-observer.ts";
import {
  type DomainRef,
  LibvirtClient,
  ListDomains,
  unlessNotFound,
} from "../../src/hypervisor/libvirt/index.ts";

const NAME = `room-saved-${process.pid}`;
const IMAGE = join(tmpdir(), `${NAME}.save`);
const GiB = 1024 ** 3;
/** No overcommit, and two vCPUs beside what the test driver runs already (its own "test"): the guest's two leave none. */
const host = { cpus: 2, memoryBytes: 64 * GiB };

let client: LibvirtClient;
let dom: DomainRef;
const abort = new AbortController();

before(async () => {
  client = await LibvirtClient.connect({ uri: "test+unix:///default" });
  await client.enableDomainEvents();
  for (const other of await client.listAllDomains(ListDomains.Active))
    host.cpus += (await client.domainInfo(other)).vcpus;
  dom = await client.defineDomain(`<domain type='test'><name>${NAME}</name>
    <memory unit='MiB'>128</memory><vcpu>2</vcpu><os><type>hvm</type></os></domain>`);
  dom = await client.startDomain(dom);
});

after(async () => {
  abort.abort();
  const left = await unlessNotFound(client.lookupDomainByName(NAME));
  if (left) {
    await client.destroyDomain(left).catch(() => undefined);
    await client.undefineDomain(left).catch(() => undefined);
  }
  await rm(IMAGE, { force: true });
  await client.close();
});

/** Polls until the room refuses (or accepts) a one-vCPU start beside the guest. */
async function untilRefused(room: NodeRoom, refused: boolean, what: string) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const refusal = room.claim("other", { cpus: 1, memoryBytes: GiB });
    // Accepted, the claim is let go at once (nothing started); refused, it waits no more.
    if (refusal) room.forget("other");
    else room.settle("other", undefined);
    if (Boolean(refusal) === refused) return;
    assert.ok(Date.now() < deadline, what);
    await sleep(50);
  }
}

describe("room counts a saved guest", () => {
  it("while it lies saved (recount and event alike), after it is restored, and frees it once destroyed", async () => {
    await client.domainSaveFlags(dom, IMAGE, null);
    // A recount, as an agent makes when it starts: the saved guest is counted.
    const fresh = new NodeRoom("n1", () => host, 1);
    await resyncRoom(fresh, client);
    await untilRefused(fresh, true, "a recount counts the saved guest");

    // Events, as an agent follows them after its first recount: a save (its Stopped event)
    // leaves the guest counted, a destroy frees its room.
    const followed = new NodeRoom("n1", () => host, 1);
    keepRoomCurrent(followed, client, pino({ level: "silent" }), abort.signal);
    await resyncRoom(followed, client);
    await client.domainRestoreFlags(IMAGE, null);
    await untilRefused(followed, true, "the restored guest is counted");
    dom = (await client.lookupDomainByName(NAME)) as DomainRef;
    await client.domainSaveFlags(dom, IMAGE, null);
    await sleep(300); // the save's Stopped event has come and gone
    await untilRefused(followed, true, "its save's event leaves it counted");
    await client.domainRestoreFlags(IMAGE, null);
    dom = (await client.lookupDomainByName(NAME)) as DomainRef;
    await client.destroyDomain(dom);
    await untilRefused(followed, false, "destroyed, its room is free");
    await resyncRoom(fresh, client);
    await untilRefused(fresh, false, "a recount no longer counts it");
  });
});
