#!/usr/bin/env node
// kubectl-vm: the kubectl plugin (`kubectl vm VERB …`); `kubectl vm help` lists the verbs.
// Exit codes: 0 done, 1 the server or the cluster refused or failed, 2 usage error.
import { enableCompileCache } from "node:module";

// A write must return within 500 ms, and stripping the types of our modules anew on every call
// takes about a third of that: Node keeps the compiled modules in the OS temp directory. Set
// before the first import of ours, which is why the rest is imported dynamically.
enableCompileCache();
// A reader that stops early (| head) is no error of ours: stop quietly, as kubectl does.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  process.exit(0);
});
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2), {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
});
