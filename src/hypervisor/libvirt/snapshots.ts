// The calls that capture a domain's state: internal snapshots, save to and restore from a file,
// and freezing the guest's file systems through its agent (for a consistent disk snapshot).
// LibvirtClient (client.ts) extends this class; it is its own file only to keep client.ts short.
// The long ones take TIMEOUT_MS over their class's deadline (deadlines.ts): how long they may take
// grows with the guest's memory, which only the caller knows.
import { EventEmitter } from "node:events";
import { type DomainRef, P, type Procedure, type SnapshotRef } from "./protocol.ts";

export abstract class SnapshotCalls extends EventEmitter {
  /** Calls P with TIMEOUT_MS, or else the deadline of P's class. */
  protected abstract call<A, R>(p: Procedure<A, R>, args: A, timeoutMs?: number): Promise<R>;

  // ---- snapshots ----

  async createSnapshot(dom: DomainRef, xml: string, flags = 0, timeoutMs?: number): Promise<SnapshotRef> {
    return (await this.call(P.DomainSnapshotCreateXml, { dom, xml_desc: xml, flags }, timeoutMs)).snap;
  }
  async listSnapshots(dom: DomainRef, flags = 0): Promise<SnapshotRef[]> {
    return (await this.call(P.DomainListAllSnapshots, { dom, need_results: 1, flags })).snapshots;
  }
  async lookupSnapshot(dom: DomainRef, name: string): Promise<SnapshotRef> {
    return (await this.call(P.DomainSnapshotLookupByName, { dom, name, flags: 0 })).snap;
  }
  async snapshotXml(snap: SnapshotRef, flags = 0): Promise<string> {
    return (await this.call(P.DomainSnapshotGetXmlDesc, { snap, flags })).xml;
  }
  async currentSnapshot(dom: DomainRef): Promise<SnapshotRef> {
    return (await this.call(P.DomainSnapshotCurrent, { dom, flags: 0 })).snap;
  }
  /** SnapshotRevertFlags.Running / .Paused choose the state after the revert (default: the snapshot's). */
  async revertToSnapshot(snap: SnapshotRef, flags = 0, timeoutMs?: number): Promise<void> {
    await this.call(P.DomainRevertToSnapshot, { snap, flags }, timeoutMs);
  }
  async deleteSnapshot(snap: SnapshotRef, flags = 0, timeoutMs?: number): Promise<void> {
    await this.call(P.DomainSnapshotDelete, { snap, flags }, timeoutMs);
  }

  // ---- save / restore ----

  /**
   * Saves a running or paused domain's memory and device state to PATH (a file on the libvirtd
   * host) and stops it. DXML replaces the domain XML stored in the image (same guest ABI), or
   * null; FLAGS are DomainSaveRestoreFlags (Running/Paused: the state a restore starts it in).
   */
  async domainSaveFlags(
    dom: DomainRef,
    path: string,
    dxml: string | null,
    flags = 0,
    timeoutMs?: number,
  ): Promise<void> {
    await this.call(P.DomainSaveFlags, { dom, to: path, dxml, flags }, timeoutMs);
  }
  /** Starts the domain saved in PATH again (look it up by name or UUID afterwards). */
  async domainRestoreFlags(path: string, dxml: string | null, flags = 0, timeoutMs?: number): Promise<void> {
    await this.call(P.DomainRestoreFlags, { from: path, dxml, flags }, timeoutMs);
  }
  /** The domain XML stored in the save image at PATH (SaveImageXmlFlags). */
  async domainSaveImageXml(path: string, flags = 0): Promise<string> {
    return (await this.call(P.DomainSaveImageGetXmlDesc, { file: path, flags })).xml;
  }

  // ---- guest agent: file-system freeze ----

  /**
   * Freezes the guest's file systems (all of them when MOUNTPOINTS is empty) through the QEMU
   * guest agent and returns how many it froze. Without a usable agent it fails with an error
   * that isGuestAgentUnavailable (errors.ts) recognises.
   */
  async domainFSFreeze(
    dom: DomainRef,
    mountpoints: string[] = [],
    flags = 0,
    timeoutMs?: number,
  ): Promise<number> {
    return (await this.call(P.DomainFsFreeze, { dom, mountpoints, flags }, timeoutMs)).filesystems;
  }
  /**
   * Thaws what domainFSFreeze froze; returns how many file systems it thawed. QEMU thaws all of
   * them: it refuses MOUNTPOINTS (ArgumentUnsupported, "specifying mountpoints is not supported").
   */
  async domainFSThaw(
    dom: DomainRef,
    mountpoints: string[] = [],
    flags = 0,
    timeoutMs?: number,
  ): Promise<number> {
    return (await this.call(P.DomainFsThaw, { dom, mountpoints, flags }, timeoutMs)).filesystems;
  }
}
