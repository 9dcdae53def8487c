#!/usr/bin/env node
// kubectl_complete-vm: shell completion for `kubectl vm` (kubectl runs it for `kubectl vm …<TAB>`
// with the words typed after `vm`, and reads cobra's __complete output). Names come from the API
// server with a short deadline; on any error it offers nothing rather than hang or print an
// error into the user's command line.
import { enableCompileCache } from "node:module";

enableCompileCache(); // see kubectl-vm.ts: a completion must be quick too
const { completionFor } = await import("../cli/complete-api.ts");
process.stdout.write(await completionFor(process.argv.slice(2)));
