// The directories of the node's storage pools, as the host-media check reads them: a pool
// undefined between the listing and the read of its definition is left out, not a failure
// that would refuse every VM with host media until the next try.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { poolTargets } from "../../../src/controllers/node/vm-media.ts";
import { ErrorCode, type LibvirtClient, LibvirtError } from "../../../src/hypervisor/libvirt/index.ts";

const poolXml = (name: string) =>
  `<pool type='dir'><name>${name}</name><target><path>/var/lib/${name}</path></target></pool>`;

/** A libvirt whose pool GONE is undefined right after it was listed. */
function libvirtWithVanishingPool(gone: string, failure: number = ErrorCode.NoStoragePool) {
  return {
    listStoragePools: async () => [{ name: "kept" }, { name: gone }],
    storagePoolXml: async (ref: { name: string }) => {
      if (ref.name === gone)
        throw new LibvirtError(failure, 18, 2, `storage pool '${gone}' not found`, "StoragePoolGetXmlDesc");
      return poolXml(ref.name);
    },
  } as unknown as LibvirtClient;
}

describe("poolTargets", () => {
  it("leaves out a pool undefined between the listing and its read", async () => {
    assert.deepEqual(await poolTargets(libvirtWithVanishingPool("gone")), [
      { pool: "kept", dir: "/var/lib/kept" },
    ]);
  });

  it("still fails on any other error (the check must not pass on what it could not read)", async () => {
    await assert.rejects(poolTargets(libvirtWithVanishingPool("broken", ErrorCode.AuthFailed)), /broken/);
  });
});
