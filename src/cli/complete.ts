// Shell completion through kubectl (`kubectl_complete-vm`, cobra's __complete protocol): kubectl
// passes the words typed after `kubectl vm`, the last one being completed (maybe empty), and reads
// one candidate a line ("word<TAB>description" allowed), then ":<directive>". Verbs, sub-verbs,
// flags and their values come from the verb table; names of VMs, snapshots, templates and disks
// from the API server, through SOURCE, listing only what the position needs.
import { OUTPUT_FORMATS } from "./args.ts";
import { type ArgKind, findVerb, subVerbs, VERB_GROUPS, type VerbSpec } from "./commands.ts";
import { subVerbSummary, verbSummaries } from "./help.ts";

/** cobra's ShellCompDirective values used here. */
export const DIRECTIVE = { default: 0, noFileComp: 4 } as const;

export interface CompletionSource {
  /** Names of KIND in NAMESPACE; "snapshot" of VM only when VM is given. */
  names(
    kind: "vm" | "snapshot" | "template" | "vmdisk",
    namespace: string | undefined,
    vm?: string,
  ): Promise<string[]>;
  /** The names of VM's disks (spec.disks[].name). */
  vmDisks(vm: string, namespace: string | undefined): Promise<string[]>;
  namespaces(): Promise<string[]>;
  contexts(kubeconfig: string | undefined): string[];
}

export interface Completion {
  candidates: string[];
  directive: number;
}

interface Typed {
  namespace?: string;
  context?: string;
  kubeconfig?: string;
  positionals: string[];
  /** A flag waiting for its value (the word being completed). */
  pendingFlag?: string;
}

/** Global flags with a value, by every spelling; the value is the next word or after "=". */
const GLOBAL_VALUE_FLAGS: Record<string, "namespace" | "context" | "kubeconfig" | "output"> = {
  "-n": "namespace",
  "--namespace": "namespace",
  "--context": "context",
  "--kubeconfig": "kubeconfig",
  "-o": "output",
  "--output": "output",
};

/** The verb the positionals name, and how many words it took (1, or 2 for "disk attach"). */
function verbOf(positionals: readonly string[]): { verb?: VerbSpec; words: number } {
  const [first, second] = positionals;
  if (first && VERB_GROUPS.includes(first)) {
    const verb = second ? findVerb(`${first} ${second}`) : undefined;
    return verb ? { verb, words: 2 } : { words: 1 };
  }
  const verb = first ? findVerb(first) : undefined;
  return verb ? { verb, words: 1 } : { words: 0 };
}

/** Reads the words before the one completed: global flags, positionals, a flag left without value. */
function readTyped(words: readonly string[]): Typed {
  const typed: Typed = { positionals: [] };
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as string;
    const eq = word.indexOf("=");
    const name = word.startsWith("--") && eq > 0 ? word.slice(0, eq) : word;
    const global = GLOBAL_VALUE_FLAGS[name];
    if (global) {
      const value = eq > 0 && name !== word ? word.slice(eq + 1) : words[++i];
      if (value === undefined) typed.pendingFlag = name;
      else if (global !== "output") typed[global] = value;
      continue;
    }
    if (word.startsWith("-")) {
      // A verb flag with a separate value: the verb is known by now (flags follow it).
      const flag = word.replace(/^--/, "");
      const kind = verbOf(typed.positionals).verb?.flags[flag];
      if (eq < 0 && kind && kind !== "bool") {
        if (i + 1 < words.length) i++;
        else typed.pendingFlag = word;
      }
      continue;
    }
    typed.positionals.push(word);
  }
  return typed;
}

const withPrefix = (prefix: string, values: readonly string[]) => values.filter((v) => v.startsWith(prefix));

/** Candidates for a value of KIND; "new" names something not there yet. */
async function valuesOf(
  kind: ArgKind | readonly string[],
  typed: Typed,
  source: CompletionSource,
  vm: string | undefined,
): Promise<string[]> {
  if (typeof kind !== "string") return [...kind]; // an enum, in its own order
  const ns = typed.namespace;
  const sorted = async (names: Promise<string[]>) => (await names).sort();
  switch (kind) {
    case "vm":
    case "template":
    case "vmdisk":
      return sorted(source.names(kind, ns));
    case "media":
      return sorted(source.names("vmdisk", ns));
    case "snapshot":
      return vm ? sorted(source.names("snapshot", ns, vm)) : [];
    case "vm-disk":
      return vm ? source.vmDisks(vm, ns) : []; // the VM's order: boot disks first as a rule
    case "verb":
    case "new":
      return [];
  }
}

/** The candidates for the last of WORDS (the words typed after `kubectl vm`). */
export async function complete(words: readonly string[], source: CompletionSource): Promise<Completion> {
  const toComplete = words.at(-1) ?? "";
  const typed = readTyped(words.slice(0, -1));
  const { verb, words: verbWords } = verbOf(typed.positionals);
  const vmArg = verb?.argKinds?.[0] === "vm" ? typed.positionals[verbWords] : undefined;
  const done = (candidates: string[], directive: number = DIRECTIVE.noFileComp): Completion => ({
    candidates,
    directive,
  });

  // A flag's value: "--flag value" (the flag before) or "--flag=value" (in the word itself).
  let flag = typed.pendingFlag;
  let prefix = "";
  let partial = toComplete;
  if (!flag && toComplete.startsWith("--") && toComplete.includes("=")) {
    flag = toComplete.slice(0, toComplete.indexOf("="));
    prefix = `${flag}=`;
    partial = toComplete.slice(prefix.length);
  }
  if (flag) {
    const global = GLOBAL_VALUE_FLAGS[flag];
    let values: string[] = [];
    if (global === "kubeconfig") return done([], DIRECTIVE.default); // a file: the shell completes it
    if (global === "namespace") values = await source.namespaces();
    else if (global === "context") values = source.contexts(typed.kubeconfig);
    else if (global === "output") values = [...OUTPUT_FORMATS];
    else if (flag === "--dry-run") values = ["server"];
    else {
      const kind = verb?.flagKinds?.[flag.replace(/^--/, "")];
      if (kind === "media" && partial.startsWith("/")) return done([], DIRECTIVE.default);
      if (kind) values = await valuesOf(kind, typed, source, vmArg);
    }
    return done(withPrefix(partial, values).map((v) => prefix + v));
  }

  if (toComplete.startsWith("-")) {
    const globals = ["--namespace", "--context", "--kubeconfig", "--help"];
    if (!verb || verb.allNamespaces) globals.push("--all-namespaces");
    if (verb?.lists || verb?.writes) globals.push("--output");
    if (verb?.writes) globals.push("--dry-run=server");
    if (verb?.waits) globals.push("--wait");
    const own = Object.keys(verb?.flags ?? {}).map((f) => `--${f}`);
    return done(withPrefix(toComplete, [...own, ...globals]));
  }

  if (!verb) {
    const [group] = typed.positionals;
    if (group && VERB_GROUPS.includes(group) && typed.positionals.length === 1)
      return done(
        withPrefix(toComplete, subVerbs(group)).map((sub) => `${sub}\t${subVerbSummary(group, sub)}`),
      );
    if (typed.positionals.length > 0) return done([]);
    return done(
      verbSummaries()
        .filter(([word]) => word.startsWith(toComplete))
        .map(([word, summary]) => `${word}\t${summary}`),
    );
  }
  if (verb.name === "help") {
    const [, group] = typed.positionals;
    if (typed.positionals.length === 1)
      return done(
        withPrefix(
          toComplete,
          verbSummaries().map(([w]) => w),
        ),
      );
    if (typed.positionals.length === 2 && group && VERB_GROUPS.includes(group))
      return done(withPrefix(toComplete, subVerbs(group)));
    return done([]);
  }
  const index = typed.positionals.length - verbWords;
  const kind = verb.argKinds?.[index];
  if (!kind) return done([]);
  if (kind === "media" && toComplete.startsWith("/")) return done([], DIRECTIVE.default);
  return done(withPrefix(toComplete, await valuesOf(kind, typed, source, vmArg)));
}

/** cobra's output: candidates, then ":directive". */
export function completionOutput(c: Completion): string {
  return `${[...c.candidates, `:${c.directive}`].join("\n")}\n`;
}
