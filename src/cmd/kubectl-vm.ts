#!/usr/bin/env node
// kubectl-vm: the kubectl plugin (`kubectl vm VERB …`); `kubectl vm help` lists the verbs.
// Exit codes: 0 done, 1 the server or the cluster refused or failed, 2 usage error.
import { parseCommandLine, UsageError } from "../cli/args.ts";
import { formatError } from "../cli/client.ts";
import { helpText } from "../cli/help.ts";

async function main(argv: string[]): Promise<number> {
  const out = (s: string) => process.stdout.write(s);
  try {
    const cmd = parseCommandLine(argv);
    if (cmd.verb.name === "help") {
      out(helpText(cmd.args[0]));
      return 0;
    }
    // The client library takes most of a call's time to load; help and usage errors skip it.
    const { connect } = await import("../cli/client.ts");
    const { Verbs } = await import("../cli/verbs.ts");
    await new Verbs(await connect(cmd.global), cmd, out).run();
    return 0;
  } catch (err) {
    process.stderr.write(`${formatError(err)}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
