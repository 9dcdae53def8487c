// Command-line parsing for kubectl-vm: kubectl's global flags, a verb (or a group and its
// sub-verb: "cdrom insert"), its arguments and flags. Pure (no I/O) so every usage error is
// unit-testable; errors are UsageError with kubectl's wording.

import { DISK_BUSES, RUN_STRATEGIES } from "../api/names.ts";
import { DEFAULT_WAIT_MS, findVerb, subVerbs, VERB_GROUPS, type VerbSpec } from "./commands.ts";

export const OUTPUT_FORMATS = ["json", "yaml", "name", "wide"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface GlobalOptions {
  namespace?: string;
  allNamespaces: boolean;
  context?: string;
  kubeconfig?: string;
  output?: OutputFormat;
  dryRun: boolean;
  /** Milliseconds to wait for the work to finish; undefined: do not wait. */
  waitMs?: number;
}

export type FlagValue = string | number | boolean;

export interface ParsedCommand {
  global: GlobalOptions;
  verb: VerbSpec;
  args: string[];
  flags: Record<string, FlagValue>;
}

/** A mistake in the command line: printed as "error: …", exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Longest grace period a stop or restart may ask for (spec.shutdown.gracePeriodSeconds' bound). */
export const MAX_GRACE_PERIOD_SECONDS = 86_400;

/** "90s", "5m", "1h30m", "250ms" or a bare number of seconds, as kubectl's --timeout takes them. */
export function parseDuration(text: string): number {
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const n = Number(m[1]);
    total += m[2] === "h" ? n * 3_600_000 : m[2] === "m" ? n * 60_000 : m[2] === "s" ? n * 1000 : n;
    end = re.lastIndex;
  }
  if (text === "" || end !== text.length)
    throw new UsageError(`invalid duration "${text}" (e.g. 90s, 5m, 1h30m)`);
  return total;
}

/** Splits "--name=value" into ["name", "value"]; "--name" into ["name", undefined]. */
function splitLong(token: string): [string, string | undefined] {
  const body = token.slice(2);
  const eq = body.indexOf("=");
  return eq < 0 ? [body, undefined] : [body.slice(0, eq), body.slice(eq + 1)];
}

function parseBool(flag: string, value: string): boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  throw new UsageError(`invalid argument "${value}" for "--${flag}" flag: want true or false`);
}

function parseInt10(flag: string, value: string): number {
  if (!/^-?\d+$/.test(value))
    throw new UsageError(`invalid argument "${value}" for "--${flag}" flag: want an integer`);
  return Number(value);
}

const seeHelp = (verb: string) => `See 'kubectl vm help ${verb}'.`;

/**
 * Takes the verb off the front of POSITIONALS: one word, or a group's word and its sub-verb.
 * No verb means help.
 */
function takeVerb(positionals: string[]): VerbSpec {
  const first = positionals.shift() ?? "help";
  if (VERB_GROUPS.includes(first)) {
    const subs = subVerbs(first);
    const sub = positionals.shift();
    if (sub === undefined)
      throw new UsageError(
        `"kubectl vm ${first}" needs a sub-command: ${subs.join(", ")}\n${seeHelp(first)}`,
      );
    const verb = findVerb(`${first} ${sub}`);
    if (!verb)
      throw new UsageError(
        `unknown command "${sub}" for "kubectl vm ${first}" (one of: ${subs.join(", ")})\n${seeHelp(first)}`,
      );
    return verb;
  }
  const verb = findVerb(first);
  if (!verb)
    throw new UsageError(`unknown command "${first}" for "kubectl vm"\nRun 'kubectl vm help' for usage.`);
  return verb;
}

/**
 * Parses argv (without node and the script). Global flags may come before or after the verb,
 * as with kubectl.
 */
export function parseCommandLine(argv: readonly string[]): ParsedCommand {
  const global: GlobalOptions = { allNamespaces: false, dryRun: false };
  const positionals: string[] = [];
  const raw: Array<[string, string | undefined]> = [];
  let help = false;
  let i = 0;
  const next = (flag: string): string => {
    const v = argv[++i];
    if (v === undefined) throw new UsageError(`flag needs an argument: ${flag}`);
    return v;
  };
  for (; i < argv.length; i++) {
    const token = argv[i] as string;
    if (token === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (token === "-A" || token === "--all-namespaces") global.allNamespaces = true;
    else if (token === "-n") global.namespace = next("-n");
    else if (token.startsWith("-n") && !token.startsWith("--"))
      global.namespace = token.slice(2).replace(/^=/, "");
    else if (token === "-o") global.output = outputFormat(next("-o"));
    else if (token.startsWith("-o") && !token.startsWith("--"))
      global.output = outputFormat(token.slice(2).replace(/^=/, ""));
    else if (token === "-h") help = true;
    else if (token.startsWith("--")) {
      const [name, inline] = splitLong(token);
      switch (name) {
        case "namespace":
          global.namespace = inline ?? next(token);
          break;
        case "context":
          global.context = inline ?? next(token);
          break;
        case "kubeconfig":
          global.kubeconfig = inline ?? next(token);
          break;
        case "output":
          global.output = outputFormat(inline ?? next(token));
          break;
        case "dry-run":
          // Only the server can say what a write would do (admission, CEL rules), so only server.
          if (inline !== "server") throw new UsageError(`--dry-run must be "--dry-run=server"`);
          global.dryRun = true;
          break;
        case "wait":
          // Optional value must be attached (--wait=2m): "--wait NAME" keeps NAME positional.
          global.waitMs = inline === undefined ? DEFAULT_WAIT_MS : parseDuration(inline);
          break;
        case "help":
          help = true;
          break;
        default:
          raw.push([name, inline]);
          // A verb flag's value may be the next token; resolved below once the verb is known.
          if (inline === undefined && argv[i + 1] !== undefined && !argv[i + 1]?.startsWith("-")) {
            raw[raw.length - 1] = [name, `\0${argv[i + 1]}`];
            i++;
          }
      }
    } else if (token.startsWith("-") && token.length > 1)
      throw new UsageError(`unknown shorthand flag: '${token.slice(1, 2)}' in ${token}`);
    else positionals.push(token);
  }

  // "-h" anywhere: help for the verb typed, or for the group ("kubectl vm disk -h").
  if (help) {
    const words = positionals.filter((p) => p !== "help").slice(0, 2);
    if (words[0] && !VERB_GROUPS.includes(words[0])) words.splice(1);
    return { global, verb: findVerb("help") as VerbSpec, args: words, flags: {} };
  }
  const verb = takeVerb(positionals);
  const flags = verbFlags(verb, raw, positionals);
  checkGlobalOptions(verb, global);
  const max = verb.args.length + (verb.optionalArgs?.length ?? 0);
  if (positionals.length < verb.args.length) {
    const missing = verb.args.slice(positionals.length).join(" ");
    throw new UsageError(`"kubectl vm ${verb.name}" needs ${missing}\n${seeHelp(verb.name)}`);
  }
  if (positionals.length > max)
    throw new UsageError(
      `"kubectl vm ${verb.name}" takes ${max} argument(s), got ${positionals.length}: ${positionals.join(" ")}`,
    );
  const cmd = { global, verb, args: positionals, flags };
  checkVerbFlags(cmd);
  return cmd;
}

/** The verb's flags from RAW; a value a bool flag took from the next token goes back to POSITIONALS. */
function verbFlags(
  verb: VerbSpec,
  raw: ReadonlyArray<[string, string | undefined]>,
  positionals: string[],
): Record<string, FlagValue> {
  const flags: Record<string, FlagValue> = {};
  for (const [name, value] of raw) {
    const kind = verb.flags[name];
    if (!kind) throw new UsageError(`unknown flag: --${name}\n${seeHelp(verb.name)}`);
    // A "\0" prefix marks a value taken from the next token: a bool flag gives it back.
    const taken = value?.startsWith("\0") ? value.slice(1) : undefined;
    if (kind === "bool") {
      if (taken !== undefined) positionals.push(taken);
      flags[name] = taken !== undefined || value === undefined ? true : parseBool(name, value);
    } else {
      const v = taken ?? value;
      if (v === undefined) throw new UsageError(`flag needs an argument: --${name}`);
      flags[name] = kind === "int" ? parseInt10(name, v) : v;
    }
  }
  return flags;
}

function outputFormat(value: string): OutputFormat {
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  throw new UsageError(
    `unable to match a printer suitable for the output format "${value}", allowed formats are: ${OUTPUT_FORMATS.join(",")}`,
  );
}

/** Rejects flags the verb would silently ignore: a user who asked to dry-run must not write. */
function checkGlobalOptions(verb: VerbSpec, global: GlobalOptions): void {
  if (verb.name === "help") return;
  if (global.dryRun && !verb.writes)
    throw new UsageError(`"kubectl vm ${verb.name}" does not write: --dry-run does not apply`);
  if (global.waitMs !== undefined && !verb.waits)
    throw new UsageError(`"kubectl vm ${verb.name}" has nothing to wait for: --wait does not apply`);
  if (global.allNamespaces && !verb.allNamespaces)
    throw new UsageError(`"kubectl vm ${verb.name}" works in one namespace: -A does not apply`);
  if (global.output && !verb.lists && !verb.writes)
    throw new UsageError(`"kubectl vm ${verb.name}" prints no objects: -o does not apply`);
}

/** Flags that only make sense together, or not together, per verb. */
function checkVerbFlags({ verb, args, flags, global }: ParsedCommand): void {
  const bad = (message: string) => new UsageError(`${message}\n${seeHelp(verb.name)}`);
  const has = (flag: string) => flags[flag] !== undefined;
  const oneOf = (flag: string, values: readonly string[]) => {
    if (has(flag) && !values.includes(flags[flag] as string))
      throw bad(`--${flag} must be one of ${values.join(", ")}`);
  };
  switch (verb.name) {
    case "status":
      if (flags.refresh && !args[0]) throw bad("--refresh asks one VM's node: name the VM");
      if (global.allNamespaces && args[0]) throw bad("-A lists every namespace: leave NAME out");
      if (global.waitMs !== undefined && !flags.refresh)
        throw bad("--wait applies to --refresh (how long to wait for the node's answer)");
      break;
    case "stop":
    case "restart":
    case "freeze": {
      if (flags.force === true && has("grace-period"))
        throw bad("--force is --grace-period 0: give one of them");
      const grace = flags["grace-period"];
      if (typeof grace === "number" && (grace < 0 || grace > MAX_GRACE_PERIOD_SECONDS))
        throw bad(`--grace-period must be 0 to ${MAX_GRACE_PERIOD_SECONDS} seconds`);
      break;
    }
    case "start":
      if (flags.once === true && !has("cdrom")) throw bad("--once boots once from --cdrom: give --cdrom");
      if (flags.cdrom === "") throw bad("--cdrom needs a VMDisk name or a host path");
      break;
    case "rotation":
      if (flags.off === true) {
        const others = ["schedule", "keep", "memory", "consistent"].filter(has);
        if (others.length) throw bad(`--off removes the policy: leave out --${others.join(", --")}`);
      } else {
        if (!has("schedule") || !has("keep"))
          throw bad("give --schedule and --keep to set automatic snapshots, or --off to stop them");
        if ((flags.keep as number) < 1) throw bad("--keep must be at least 1");
      }
      break;
    case "clone":
      if (!has("from-snapshot") || !has("to")) throw bad("give --from-snapshot SNAPSHOT and --to NEW_VM");
      break;
    case "set-as-template":
      if (!has("name")) throw bad(`"kubectl vm ${verb.name}" needs --name`);
      break;
    case "create-from-template":
      if (!has("name")) throw bad(`"kubectl vm ${verb.name}" needs --name`);
      oneOf("run-strategy", RUN_STRATEGIES);
      if (
        (global.output === "yaml" || global.output === "json") &&
        !global.dryRun &&
        global.waitMs !== undefined
      )
        throw bad(`-o ${global.output} prints the VMs and creates none: --wait does not apply`);
      break;
    case "disk attach": {
      oneOf("bus", DISK_BUSES);
      const order = flags["boot-order"];
      if (typeof order === "number" && (order < 1 || order > 64)) throw bad("--boot-order must be 1 to 64");
      break;
    }
  }
}
