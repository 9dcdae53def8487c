// Installs the kubectl plugin: `kubectl-vm` (kubectl finds it on PATH) and `kubectl_complete-vm`
// (kubectl's shell completion for plugins) as small scripts that run this checkout's entry points
// with the Node that installs them, so `kubectl vm …` works wherever the PATH reaches.
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CACHE_DIR, REPO_ROOT } from "./tools.ts";

const ENTRY_POINTS = {
  "kubectl-vm": "src/cmd/kubectl-vm.ts",
  "kubectl_complete-vm": "src/cmd/kubectl-vm-complete.ts",
} as const;

/**
 * Node's compile cache, unless the caller chose one: a warm cache keeps the next call from
 * stripping the .ts files' types again (the stripper alone takes ~200 ms to load; make
 * bench-plugin) and from compiling the modules again. Keyed by each file's content.
 */
const COMPILE_CACHE = join(CACHE_DIR, "node-compile-cache");

/** A POSIX shell word: the value in single quotes, quotes inside it closed and reopened. */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'"'"'`)}'`;
}

/** Writes the plugin's executables into DIR; returns their paths. Idempotent. */
export async function installPlugin(dir: string, node = process.execPath): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const [name, entry] of Object.entries(ENTRY_POINTS)) {
    const path = join(dir, name);
    const script =
      "#!/bin/sh\n# Written by libvirt-operator's make local.\n" +
      `NODE_COMPILE_CACHE="\${NODE_COMPILE_CACHE:-${COMPILE_CACHE.replaceAll(/["$`\\]/g, "\\$&")}}"\n` +
      "export NODE_COMPILE_CACHE\n" +
      `exec ${shellQuote(node)} ${shellQuote(join(REPO_ROOT, entry))} "$@"\n`;
    await writeFile(path, script);
    await chmod(path, 0o755);
    written.push(path);
  }
  return written;
}
