// Reading what a guest would read from a volume, without the guest: its first sector, through
// any backing file, while QEMU may still hold it open (-U).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/cmd/local/tools.ts";

/** The first 512 bytes of the volume at PATH (FORMAT qcow2 or raw), as a guest sees them. */
export async function firstSector(path: string, format = "qcow2"): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), "lvo-sector-"));
  const out = join(dir, "sector.raw");
  try {
    await run("qemu-img", [
      "dd",
      "-U",
      "-f",
      format,
      "-O",
      "raw",
      "bs=512",
      "count=1",
      `if=${path}`,
      `of=${out}`,
    ]);
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A qcow2 image in DIR (16 MiB unless BYTES) whose first sector holds the counter value N (lvo.counter reads it). */
export async function counterImage(
  dir: string,
  name: string,
  n: number,
  bytes = 16 * 2 ** 20,
): Promise<string> {
  const raw = join(dir, `${name}.raw`);
  const image = Buffer.alloc(bytes);
  image.write(`${n}\n`, 0, "latin1");
  writeFileSync(raw, image);
  const path = join(dir, `${name}.qcow2`);
  await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, path]);
  rmSync(raw);
  return path;
}
