// The ownership marks of a VMDisk's volume in its pool (volume-claim.ts says what they mean):
// empty raw volumes read and written through libvirt, like the volume they stand beside.
import {
  type LibvirtClient,
  type StoragePoolRef,
  type StorageVolRef,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import { volumeXml } from "../../hypervisor/storage/volume.ts";
import { type MarkState, markNameOf } from "./volume-claim.ts";

export class VolumeMarks {
  private readonly libvirt: LibvirtClient;
  private readonly clusterId: string;

  constructor(libvirt: LibvirtClient, clusterId: string) {
    this.libvirt = libvirt;
    this.clusterId = clusterId;
  }

  /** Which of this cluster's marks VOLUME has. */
  async read(pool: StoragePoolRef, volume: string): Promise<{ owner: boolean; making: boolean }> {
    const [owner, making] = await Promise.all(
      (["owner", "making"] as const).map((s) => this.lookup(pool, volume, s)),
    );
    return { owner: owner !== undefined, making: making !== undefined };
  }

  /** Before anything of VOLUME is written: it is this cluster's, and not complete. */
  async making(pool: StoragePoolRef, volume: string): Promise<void> {
    await this.ensure(pool, volume, "making");
  }

  /** VOLUME is complete: the owner mark, then the making mark goes. */
  async complete(pool: StoragePoolRef, volume: string): Promise<void> {
    await this.ensure(pool, volume, "owner");
    await this.drop(pool, volume, "making");
  }

  /** Nothing was made after all (a source not there yet, a refused import): the making mark goes. */
  async abandon(pool: StoragePoolRef, volume: string): Promise<void> {
    if (await unlessNotFound(this.libvirt.lookupVolume(pool, volume))) return; // partial: restarted later
    await this.drop(pool, volume, "making");
  }

  /** After VOLUME is deleted: its marks go (owner last, so a crash leaves it claimed). */
  async remove(pool: StoragePoolRef, volume: string): Promise<void> {
    await this.drop(pool, volume, "making");
    await this.drop(pool, volume, "owner");
  }

  private lookup(pool: StoragePoolRef, volume: string, state: MarkState): Promise<StorageVolRef | undefined> {
    return unlessNotFound(this.libvirt.lookupVolume(pool, markNameOf(volume, this.clusterId, state)));
  }

  private async ensure(pool: StoragePoolRef, volume: string, state: MarkState) {
    if (await this.lookup(pool, volume, state)) return;
    const name = markNameOf(volume, this.clusterId, state);
    await this.libvirt.createVolume(
      pool,
      volumeXml({ name, format: "raw", capacityBytes: 0, allocationBytes: 0 }),
    );
  }

  private async drop(pool: StoragePoolRef, volume: string, state: MarkState) {
    const mark = await this.lookup(pool, volume, state);
    if (mark) await unlessNotFound(this.libvirt.deleteVolume(mark));
  }
}
