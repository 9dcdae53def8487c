// Requests a user makes of the node agent that leave the domain's definition alone: look at the
// VM now (refresh), and freeze or thaw the guest's file systems through its QEMU guest agent.
import { FSFREEZE_ANNOTATION, FSTHAW_ANNOTATION, REFRESH_ANNOTATION } from "../../api/names.ts";
import type { VirtualMachine, VirtualMachineStatus } from "../../api/virtualmachine.ts";
import type { DomainRef, LibvirtClient } from "../../hypervisor/libvirt/index.ts";
import { describeError } from "../../runtime/kube.ts";
import type { Logger } from "../../runtime/logging.ts";
import { type EventReason, Reason } from "../event-reasons.ts";
import { newestRequest } from "./vm-decide.ts";

export type GuestFilesystems = NonNullable<VirtualMachineStatus["guestFilesystems"]>;

/** How long the guest agent may take to freeze or thaw (it flushes dirty pages first). */
export const FILESYSTEM_REQUEST_MS = 30_000;

/** The refresh request not answered yet (its annotation value). */
export function pendingRefresh(vm: VirtualMachine, handled = vm.status?.refreshHandled): string | undefined {
  const value = vm.metadata.annotations?.[REFRESH_ANNOTATION];
  return value && value !== handled ? value : undefined;
}

/** The newer of the freeze and thaw requests, unless answered. */
export function pendingFilesystemRequest(
  vm: VirtualMachine,
  handled = vm.status?.guestFilesystems?.requestHandled,
): { verb: "freeze" | "thaw"; tag: string } | undefined {
  return newestRequest(vm, { freeze: FSFREEZE_ANNOTATION, thaw: FSTHAW_ANNOTATION }, handled);
}

export interface FilesystemContext {
  libvirt: LibvirtClient;
  log: Logger;
  event: (reason: EventReason, message: string) => void;
}

/**
 * Answers a pending freeze or thaw request on DOM (running when RUNNING), and returns where the
 * guest's file systems stand. A guest that is off holds nothing frozen.
 */
export async function answerFilesystemRequest(
  ctx: FilesystemContext,
  vm: VirtualMachine,
  dom: DomainRef,
  running: boolean,
  known: GuestFilesystems | undefined,
): Promise<GuestFilesystems | undefined> {
  const request = pendingFilesystemRequest(vm, known?.requestHandled);
  const was = known ?? vm.status?.guestFilesystems;
  if (!request) return was && !running && was.frozen ? { ...was, frozen: false } : was;
  const answered = (frozen: boolean, message?: string): GuestFilesystems => ({
    frozen,
    requestHandled: request.tag,
    ...(message ? { message } : {}),
  });
  if (!running) {
    const message = `cannot ${request.verb} the guest's file systems: the VM is not running`;
    ctx.log.info({ request: request.tag }, message);
    ctx.event(Reason.FilesystemRequestFailed, message);
    return answered(false, message);
  }
  try {
    if (request.verb === "freeze") {
      const count = await ctx.libvirt.domainFSFreeze(dom, [], 0, FILESYSTEM_REQUEST_MS);
      ctx.log.info({ request: request.tag, filesystems: count }, "guest file systems frozen");
      ctx.event(Reason.FilesystemsFrozen, `${count} file system(s) frozen by the guest agent`);
      return answered(true);
    }
    const count = await ctx.libvirt.domainFSThaw(dom, [], 0, FILESYSTEM_REQUEST_MS);
    ctx.log.info({ request: request.tag, filesystems: count }, "guest file systems thawed");
    ctx.event(Reason.FilesystemsThawed, `${count} file system(s) thawed by the guest agent`);
    return answered(false);
  } catch (err) {
    const message = `the guest agent did not ${request.verb} the file systems: ${describeError(err)}`;
    ctx.log.warn({ request: request.tag, err: describeError(err) }, "file-system request failed");
    ctx.event(Reason.FilesystemRequestFailed, message);
    // A failed thaw leaves them as they were; a failed freeze froze nothing (libvirt thaws on error).
    return answered(request.verb === "thaw" ? (was?.frozen ?? false) : false, message);
  }
}
