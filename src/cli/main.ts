// kubectl-vm's main: parse, answer help without connecting, else run the verb.
// Exit codes: 0 done, 1 the server or the cluster refused or failed, 2 usage error.
import { parseCommandLine, UsageError } from "./args.ts";
import { formatError } from "./errors.ts";
import { helpText } from "./help.ts";
import type { Output } from "./verbs-base.ts";

export async function main(argv: readonly string[], io: Output): Promise<number> {
  try {
    const cmd = parseCommandLine(argv);
    if (cmd.verb.name === "help") {
      io.out(helpText(cmd.args));
      return 0;
    }
    // Loaded once the command line is good: help and usage errors answer without them.
    const [{ connect }, { runVerb }] = await Promise.all([import("./client.ts"), import("./verbs.ts")]);
    const client = await connect(cmd.global);
    try {
      await runVerb(client, cmd, io);
    } finally {
      client.close();
    }
    return 0;
  } catch (err) {
    io.err(`${formatError(err)}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}
