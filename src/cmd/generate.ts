// Writes the generated files: from src/api (CRDs, chart CRD templates) and from src/argocd
// (examples/argocd/argocd-cm.yaml).
// `--check` writes nothing and exits 1 when a committed file differs.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { generatedFiles } from "../api/render.ts";
import { argocdFiles } from "../argocd/render.ts";

const root = join(import.meta.dirname, "..", "..");
const check = process.argv.includes("--check");
let drift = 0;
for (const [path, content] of [...generatedFiles(), ...argocdFiles()]) {
  const full = join(root, path);
  const current = await readFile(full, "utf8").catch(() => "");
  if (current === content) continue;
  if (check) {
    console.error(`drift: ${path} differs from its source (run make generate)`);
    drift++;
  } else {
    await mkdir(dirname(full), { recursive: true });
    await writeFile(full, content);
    console.log(`wrote ${path}`);
  }
}
process.exitCode = drift ? 1 : 0;
