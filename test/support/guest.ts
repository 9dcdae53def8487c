// The TCG test guest (scripts/setup/guest.sh): where it is, a domain XML that boots it,
// and reading its serial console, where /init prints marker lines.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { REPO_ROOT, run } from "../../src/cmd/local/tools.ts";

/** Printed once per boot by the guest's /init (a bare "…-BOOTED" line precedes it). */
export const BOOTED = "LIBVIRT-OPERATOR-GUEST-BOOTED uptime=";
export const POWEROFF = "LIBVIRT-OPERATOR-GUEST-POWEROFF";

export interface Guest {
  kernel: string;
  initrd: string;
}

/** Builds the guest when it is missing (cached) and returns its files. */
export async function ensureGuest(): Promise<Guest> {
  const { stdout } = await run("bash", [join(REPO_ROOT, "scripts", "setup", "guest.sh")], {
    timeoutMs: 600_000,
  });
  const dir = stdout.trim().split("\n").at(-1)!;
  return { kernel: join(dir, "vmlinuz"), initrd: join(dir, "initramfs.img") };
}

/** A VirtualMachine spec that boots the test guest under TCG, with EXTRA laid over it. */
export function guestVmSpec(guest: Guest, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    hypervisor: "qemu",
    memory: "256Mi",
    cpu: { cores: 1 },
    boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: "console=ttyS0 panic=-1" },
    shutdown: { gracePeriodSeconds: 60 },
    ...extra,
  };
}

export interface GuestDomainOptions {
  name: string;
  guest: Guest;
  consoleLog: string;
  memoryMiB?: number;
  disks?: Array<{ path: string; format: "qcow2" | "raw"; dev: string }>;
}

/** A test fixture, not product code: the operator's domain XML builder comes with the VM controller. */
export function guestDomainXml(o: GuestDomainOptions): string {
  const disks = (o.disks ?? [])
    .map(
      (d) =>
        `<disk type='file' device='disk'><driver name='qemu' type='${d.format}'/>` +
        `<source file='${d.path}'/><target dev='${d.dev}' bus='virtio'/></disk>`,
    )
    .join("\n    ");
  return `<domain type='qemu'>
  <name>${o.name}</name>
  <memory unit='MiB'>${o.memoryMiB ?? 256}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${o.guest.kernel}</kernel>
    <initrd>${o.guest.initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    ${disks}
    <serial type='file'><source path='${o.consoleLog}'/><target port='0'/></serial>
    <memballoon model='virtio'/>
  </devices>
</domain>`;
}

export function consoleText(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

/** Waits until the console shows MARKER COUNT times (e.g. a second boot after a reboot). */
export async function waitForConsole(
  path: string,
  marker: string,
  timeoutMs = 60_000,
  count = 1,
): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (consoleText(path).split(marker).length - 1 >= count) return Date.now() - started;
    await sleep(100);
  }
  throw new Error(
    `"${marker}" did not appear ${count}x on the console within ${timeoutMs} ms:\n${consoleText(path).slice(-2000)}`,
  );
}
