// The verbs kubectl-vm knows: their arguments, flags and which global options apply. One table
// read by the parser, the help text and shell completion, so the three never disagree.
import { DISK_BUSES, RUN_STRATEGIES } from "../api/names.ts";

export type FlagKind = "bool" | "string" | "int";

/** What a positional argument names, so completion can list candidates from the API server. */
export type ArgKind = "vm" | "snapshot" | "template" | "vmdisk" | "vm-disk" | "verb" | "media" | "new";

export interface VerbSpec {
  /** "status", or "cdrom insert" for a sub-verb of a group. */
  name: string;
  /** Positional argument names, in order; all required. */
  args: string[];
  /** Positional arguments that may be left out (after the required ones). */
  optionalArgs?: string[];
  /** What each positional (required, then optional) names. */
  argKinds?: ArgKind[];
  flags: Record<string, FlagKind>;
  /** What each string flag's value names, for completion. */
  flagKinds?: Record<string, ArgKind | readonly string[]>;
  /** Where -o/--dry-run/--wait/-A make sense; others reject them. */
  lists?: boolean;
  writes?: boolean;
  waits?: boolean;
  allNamespaces?: boolean;
  /** The verb waits for the node's answer even without --wait, this long (--wait=DUR overrides). */
  waitsByDefaultMs?: number;
}

/** How long `--wait` without a value waits. */
export const DEFAULT_WAIT_MS = 5 * 60_000;
/** How long fsfreeze, fsthaw, stats and status --refresh wait for the node's answer by default. */
export const NODE_ANSWER_WAIT_MS = 30_000;

const POWER_STOP_FLAGS = { force: "bool", "grace-period": "int" } as const;

export const VERBS: readonly VerbSpec[] = [
  { name: "help", args: [], optionalArgs: ["VERB", "SUBVERB"], argKinds: ["verb", "verb"], flags: {} },
  {
    name: "status",
    args: [],
    optionalArgs: ["NAME"],
    argKinds: ["vm"],
    flags: { refresh: "bool" },
    lists: true,
    allNamespaces: true,
    waits: true,
  },
  {
    name: "stats",
    args: ["NAME"],
    argKinds: ["vm"],
    flags: {},
    lists: true,
    waits: true,
    waitsByDefaultMs: NODE_ANSWER_WAIT_MS,
  },
  {
    name: "start",
    args: ["NAME"],
    argKinds: ["vm"],
    flags: { cdrom: "string", once: "bool" },
    flagKinds: { cdrom: "media" },
    writes: true,
    waits: true,
  },
  { name: "stop", args: ["NAME"], argKinds: ["vm"], flags: POWER_STOP_FLAGS, writes: true, waits: true },
  { name: "restart", args: ["NAME"], argKinds: ["vm"], flags: POWER_STOP_FLAGS, writes: true, waits: true },
  { name: "pause", args: ["NAME"], argKinds: ["vm"], flags: {}, writes: true, waits: true },
  { name: "unpause", args: ["NAME"], argKinds: ["vm"], flags: {}, writes: true, waits: true },
  { name: "freeze", args: ["NAME"], argKinds: ["vm"], flags: POWER_STOP_FLAGS, writes: true, waits: true },
  { name: "unfreeze", args: ["NAME"], argKinds: ["vm"], flags: {}, writes: true },
  {
    name: "fsfreeze",
    args: ["NAME"],
    argKinds: ["vm"],
    flags: {},
    writes: true,
    waits: true,
    waitsByDefaultMs: NODE_ANSWER_WAIT_MS,
  },
  {
    name: "fsthaw",
    args: ["NAME"],
    argKinds: ["vm"],
    flags: {},
    writes: true,
    waits: true,
    waitsByDefaultMs: NODE_ANSWER_WAIT_MS,
  },
  {
    name: "snapshot",
    args: ["VM"],
    argKinds: ["vm"],
    flags: { name: "string", memory: "bool", consistent: "bool", sticky: "bool", description: "string" },
    flagKinds: { name: "new" },
    writes: true,
    waits: true,
  },
  { name: "snapshots", args: ["VM"], argKinds: ["vm"], flags: {}, lists: true },
  {
    name: "delete-snapshot",
    args: ["VM", "SNAPSHOT"],
    argKinds: ["vm", "snapshot"],
    flags: {},
    writes: true,
  },
  {
    name: "restore",
    args: ["VM", "SNAPSHOT"],
    argKinds: ["vm", "snapshot"],
    flags: {},
    writes: true,
    waits: true,
  },
  {
    name: "rotation",
    args: ["VM"],
    argKinds: ["vm"],
    flags: { schedule: "string", keep: "int", memory: "bool", consistent: "bool", off: "bool" },
    flagKinds: { schedule: ["@hourly", "@daily", "@weekly", "@monthly", "@yearly"] },
    writes: true,
  },
  {
    name: "clone",
    args: ["VM"],
    argKinds: ["vm"],
    flags: { "from-snapshot": "string", to: "string" },
    flagKinds: { "from-snapshot": "snapshot", to: "new" },
    writes: true,
    waits: true,
  },
  {
    name: "set-as-template",
    args: ["VM"],
    argKinds: ["vm"],
    flags: { name: "string", description: "string" },
    flagKinds: { name: "new" },
    writes: true,
    waits: true,
  },
  {
    name: "create-from-template",
    args: ["TEMPLATE"],
    argKinds: ["template"],
    flags: {
      name: "string",
      amount: "int",
      start: "int",
      nodes: "string",
      description: "string",
      "run-strategy": "string",
    },
    flagKinds: {
      name: "new",
      "run-strategy": RUN_STRATEGIES,
    },
    writes: true,
    lists: true,
    waits: true,
  },
  { name: "children", args: ["TEMPLATE"], argKinds: ["template"], flags: {}, lists: true },
  { name: "targets", args: ["TEMPLATE"], argKinds: ["template"], flags: {}, lists: true },
  {
    name: "cdrom insert",
    args: ["VM", "MEDIA"],
    argKinds: ["vm", "media"],
    flags: {},
    writes: true,
    waits: true,
  },
  { name: "cdrom eject", args: ["VM"], argKinds: ["vm"], flags: {}, writes: true, waits: true },
  {
    name: "disk attach",
    args: ["VM", "DISK"],
    argKinds: ["vm", "vmdisk"],
    flags: { bus: "string", "boot-order": "int", name: "string" },
    flagKinds: { bus: DISK_BUSES, name: "new" },
    writes: true,
    waits: true,
  },
  ...(["activate", "deactivate", "detach"] as const).map(
    (sub): VerbSpec => ({
      name: `disk ${sub}`,
      args: ["VM", "DISK"],
      argKinds: ["vm", "vm-disk"],
      flags: {},
      writes: true,
      waits: true,
    }),
  ),
];

/** Verbs that are groups of sub-verbs ("cdrom insert", "disk attach"): the group's word. */
export const VERB_GROUPS: readonly string[] = [
  ...new Set(VERBS.filter((v) => v.name.includes(" ")).map((v) => v.name.split(" ")[0] as string)),
];

export function findVerb(name: string): VerbSpec | undefined {
  return VERBS.find((v) => v.name === name);
}

/** The sub-verbs of GROUP ("insert", "eject" for cdrom). */
export function subVerbs(group: string): string[] {
  return VERBS.filter((v) => v.name.startsWith(`${group} `)).map((v) => v.name.slice(group.length + 1));
}

/** The words a user may type first: every verb outside a group, and the groups. */
export function topLevelWords(): string[] {
  return [...VERBS.filter((v) => !v.name.includes(" ")).map((v) => v.name), ...VERB_GROUPS];
}
