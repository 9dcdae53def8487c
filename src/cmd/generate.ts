// Writes the files generated from src/api (CRDs, chart CRD templates).
// `--check` writes nothing and exits 1 when a committed file differs.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { generatedFiles } from "../api/render.ts";

const root = join(import.meta.dirname, "..", "..");
const check = process.argv.includes("--check");
let drift = 0;
for (const [path, content] of generatedFiles()) {
  const full = join(root, path);
  const current = await readFile(full, "utf8").catch(() => "");
  if (current === content) continue;
  if (check) {
    console.error(`drift: ${path} differs from src/api (run make generate)`);
    drift++;
  } else {
    await mkdir(dirname(full), { recursive: true });
    await writeFile(full, content);
    console.log(`wrote ${path}`);
  }
}
process.exitCode = drift ? 1 : 0;
