// The TCG test guest (scripts/setup/guest.sh): where it is, a domain XML that boots it,
// and reading its serial console, where /init prints marker lines.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { REPO_ROOT, run } from "../../src/cmd/local/tools.ts";

/** Printed once per boot by the guest's /init (a bare "…-BOOTED" line precedes it). */
export const BOOTED = "LIBVIRT-OPERATOR-GUEST-BOOTED uptime=";
export const POWEROFF = "LIBVIRT-OPERATOR-GUEST-POWEROFF";
/** qemu-ga runs on the org.qemu.guest_agent.0 port (printed after BOOTED). */
export const AGENT_STARTED = "LIBVIRT-OPERATOR-GUEST-AGENT-STARTED";
/** lvo.ext4=<dev>: "…-MOUNTED <dev>" once /dev/<dev> is mounted on /data (before BOOTED). */
export const MOUNTED = "LIBVIRT-OPERATOR-GUEST-MOUNTED";
/** lvo.counter=<dev>: "…-COUNTER-BOOT <n>", the value read from the disk at boot. */
export const COUNTER_BOOT = "LIBVIRT-OPERATOR-GUEST-COUNTER-BOOT";

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
  /** Appended to the kernel command line (lvo.* modes, see scripts/setup/guest.sh). */
  cmdline?: string;
  /** The guest agent's virtio-serial channel (libvirt picks the socket). */
  agentChannel?: boolean;
  /** Append to the console log when QEMU (re)opens it instead of truncating it. */
  consoleAppend?: boolean;
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
    <cmdline>${["console=ttyS0 panic=-1", o.cmdline].filter(Boolean).join(" ")}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    ${disks}
    <serial type='file'><source path='${o.consoleLog}'${o.consoleAppend ? " append='on'" : ""}/><target port='0'/></serial>${
      o.agentChannel
        ? `
    <channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>`
        : ""
    }
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

export interface CounterReading {
  n: number;
  /** Seconds since the guest booted (/proc/uptime). */
  uptime: number;
  /** Where the line starts in the console text. */
  at: number;
}

/** The lvo.counter lines ("…-COUNTER <n> uptime=<s>") in console TEXT, in order. */
export function counterReadings(text: string): CounterReading[] {
  return [...text.matchAll(/LIBVIRT-OPERATOR-GUEST-COUNTER (\d+) uptime=([\d.]+)/g)].map((m) => ({
    n: Number(m[1]),
    uptime: Number(m[2]),
    at: m.index,
  }));
}

/** The values lvo.counter read at each boot ("…-COUNTER-BOOT <n>") in console TEXT. */
export function counterBoots(text: string): number[] {
  return [...text.matchAll(/LIBVIRT-OPERATOR-GUEST-COUNTER-BOOT (\d+)/g)].map((m) => Number(m[1]));
}

/** Waits until FOUND returns something for the console text from offset FROM on; returns it. */
export async function waitForConsoleText<T>(
  path: string,
  found: (text: string) => T | undefined,
  what: string,
  timeoutMs = 60_000,
  from = 0,
): Promise<T> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const result = found(consoleText(path).slice(from));
    if (result !== undefined) return result;
    await sleep(100);
  }
  throw new Error(`${what}: not on the console within ${timeoutMs} ms:\n${consoleText(path).slice(-2000)}`);
}
