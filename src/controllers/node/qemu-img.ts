// qemu-img on the node, for what libvirt has no call for: reading a disk out of an internal
// snapshot, and putting a stopped disk back to one. Runs with a deadline; its stderr is the error.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export async function qemuImg(args: readonly string[], timeoutMs: number): Promise<void> {
  try {
    await run("qemu-img", [...args], { timeout: timeoutMs, maxBuffer: 1 << 20 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`qemu-img ${args[0]}: ${stderr || (err as Error).message}`);
  }
}
