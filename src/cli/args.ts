// Command-line parsing for kubectl-vm: kubectl's global flags, a verb, its arguments and flags.
// Pure (no I/O) so every usage error is unit-testable; errors are UsageError with kubectl's wording.

export const OUTPUT_FORMATS = ["json", "yaml", "name", "wide"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** How long `--wait` without a value waits. */
export const DEFAULT_WAIT_MS = 5 * 60_000;

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

type FlagKind = "bool" | "string" | "int";

export interface VerbSpec {
  name: string;
  /** Positional argument names, in order; all required. */
  args: string[];
  /** Positional arguments that may be left out (after the required ones). */
  optionalArgs?: string[];
  flags: Record<string, FlagKind>;
  /** Where -o/--dry-run/--wait/-A make sense; others reject them. */
  lists?: boolean;
  writes?: boolean;
  waits?: boolean;
  allNamespaces?: boolean;
}

export const VERBS: readonly VerbSpec[] = [
  { name: "help", args: [], optionalArgs: ["VERB"], flags: {} },
  { name: "status", args: [], optionalArgs: ["NAME"], flags: {}, lists: true, allNamespaces: true },
  { name: "start", args: ["NAME"], flags: {}, writes: true, waits: true },
  { name: "stop", args: ["NAME"], flags: {}, writes: true, waits: true },
  { name: "restart", args: ["NAME"], flags: {}, writes: true, waits: true },
  { name: "pause", args: ["NAME"], flags: {}, writes: true, waits: true },
  { name: "unpause", args: ["NAME"], flags: {}, writes: true, waits: true },
  {
    name: "snapshot",
    args: ["VM"],
    flags: { name: "string", memory: "bool", consistent: "bool", sticky: "bool", description: "string" },
    writes: true,
    waits: true,
  },
  { name: "snapshots", args: ["VM"], flags: {}, lists: true },
  { name: "restore", args: ["VM", "SNAPSHOT"], flags: {}, writes: true, waits: true },
  {
    name: "create-from-template",
    args: ["TEMPLATE"],
    flags: {
      name: "string",
      amount: "int",
      start: "int",
      nodes: "string",
      description: "string",
      "run-strategy": "string",
    },
    writes: true,
    lists: true,
    waits: true,
  },
  { name: "children", args: ["TEMPLATE"], flags: {}, lists: true },
  { name: "targets", args: ["TEMPLATE"], flags: {}, lists: true },
];

export interface ParsedCommand {
  global: GlobalOptions;
  verb: VerbSpec;
  args: string[];
  flags: Record<string, string | number | boolean>;
}

export class UsageError extends Error {
  override name = "UsageError";
}

export function findVerb(name: string): VerbSpec | undefined {
  return VERBS.find((v) => v.name === name);
}

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

/**
 * Parses argv (without node and the script). Global flags may come before or after the verb,
 * as with kubectl. No verb means help.
 */
export function parseCommandLine(argv: readonly string[]): ParsedCommand {
  const global: GlobalOptions = { allNamespaces: false, dryRun: false };
  const positionals: string[] = [];
  const raw: Array<[string, string | undefined]> = [];
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
    else if (token === "-h") positionals.unshift("help");
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
          positionals.unshift("help");
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

  const verbName = positionals.shift() ?? "help";
  const verb = findVerb(verbName);
  if (!verb)
    throw new UsageError(`unknown command "${verbName}" for "kubectl vm"\nRun 'kubectl vm help' for usage.`);
  if (verb.name === "help") positionals.splice(1); // "-h" after a verb: help for that verb

  const flags: Record<string, string | number | boolean> = {};
  for (const [name, value] of raw) {
    const kind = verb.flags[name];
    if (!kind) throw new UsageError(`unknown flag: --${name}\nSee 'kubectl vm help ${verb.name}'.`);
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

  checkVerbOptions(verb, global);
  const max = verb.args.length + (verb.optionalArgs?.length ?? 0);
  if (positionals.length < verb.args.length) {
    const missing = verb.args.slice(positionals.length).join(" ");
    throw new UsageError(`"kubectl vm ${verb.name}" needs ${missing}\nSee 'kubectl vm help ${verb.name}'.`);
  }
  if (positionals.length > max)
    throw new UsageError(
      `"kubectl vm ${verb.name}" takes ${max} argument(s), got ${positionals.length}: ${positionals.join(" ")}`,
    );
  return { global, verb, args: positionals, flags };
}

function outputFormat(value: string): OutputFormat {
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  throw new UsageError(
    `unable to match a printer suitable for the output format "${value}", allowed formats are: ${OUTPUT_FORMATS.join(",")}`,
  );
}

/** Rejects flags the verb would silently ignore: a user who asked to dry-run must not write. */
function checkVerbOptions(verb: VerbSpec, global: GlobalOptions): void {
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
