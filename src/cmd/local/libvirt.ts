// virtlogd + libvirtd for the local stack, with the settings QEMU needs as root in a sandbox.
import { chmodSync, existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { startDaemon, waitUntil } from "./processes.ts";

export const LIBVIRT_SOCKET = "/var/run/libvirt/libvirt-sock";
const QEMU_CONF = "/etc/libvirt/qemu.conf";
const MARK = "# managed by libvirt-operator local stack";
const QEMU_SETTINGS = ['user = "root"', 'group = "root"', 'security_driver = "none"'];

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (!existsSync(path)) return resolve(false);
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Root in a sandbox: QEMU runs as root without a security driver, or it cannot open its files. */
async function configureQemu(): Promise<boolean> {
  const current = await readFile(QEMU_CONF, "utf8");
  if (current.includes(MARK)) return false;
  const kept = current
    .split("\n")
    .filter((line) => !/^\s*(user|group|security_driver)\s*=/.test(line))
    .join("\n");
  await writeFile(QEMU_CONF, `${kept.trimEnd()}\n\n${MARK}\n${QEMU_SETTINGS.join("\n")}\n`);
  return true;
}

export interface LibvirtStart {
  /** False when a libvirtd was already answering; the stack then leaves it alone. */
  started: boolean;
}

export async function startLibvirt(stateDir: string): Promise<LibvirtStart> {
  if (existsSync("/dev/kvm")) chmodSync("/dev/kvm", 0o666);
  const changed = await configureQemu();
  if (await socketAnswers(LIBVIRT_SOCKET)) {
    if (changed) {
      process.stderr.write(`note: ${QEMU_CONF} changed; restart libvirtd for it to apply\n`);
    }
    return { started: false };
  }
  await startDaemon(stateDir, { name: "virtlogd", command: "virtlogd", args: [] });
  const pid = await startDaemon(stateDir, { name: "libvirtd", command: "libvirtd", args: [] });
  await waitUntil("libvirtd", () => socketAnswers(LIBVIRT_SOCKET), {
    timeoutMs: 30_000,
    stateDir,
    daemon: "libvirtd",
    pid,
  });
  return { started: true };
}
