// `kubectl vm help [verb]`: what each verb does, its flags, examples, and what it writes — spec,
// which Argo CD and Flux see as drift, or only annotations and new objects, which they do not.
import { UsageError } from "./args.ts";
import { findVerb, subVerbs, topLevelWords, VERB_GROUPS, VERBS } from "./commands.ts";

type Writes = "reads" | "annotations" | "spec" | "objects" | "mixed";

interface VerbHelp {
  usage: string;
  summary: string;
  text?: string;
  flags?: Record<string, string>;
  examples: string[];
  writes: Writes;
  /** For "mixed": which cases change spec. */
  gitops?: string;
}

const GITOPS: Record<Exclude<Writes, "mixed">, string> = {
  reads: "Reads only.",
  annotations: "Writes annotations only, never spec: Argo CD and Flux see no drift and leave it alone.",
  spec:
    "Changes spec: Argo CD and Flux see drift and, with self-heal or the next sync, put back what Git says.\n" +
    "Change Git instead where Git manages the VM.",
  objects:
    "Creates new objects and changes no existing spec. Where Git manages the namespace, a sync that prunes\n" +
    "deletes objects Git does not have: put them in Git (create-from-template -o yaml prints them).",
};

const GRACE_FLAGS = {
  force: "do not wait for the guest: power off (reset) at once (same as --grace-period 0)",
  "grace-period":
    "N seconds for the guest after the ACPI request before it is forced (default: spec.shutdown.gracePeriodSeconds, 180)",
};

const VERB_HELP: Record<string, VerbHelp> = {
  help: {
    usage: "help [VERB]",
    summary: "Show help for kubectl vm or one verb.",
    examples: ["kubectl vm help stop"],
    writes: "reads",
  },
  status: {
    usage: "status [NAME] [-A] [--refresh [--wait=DUR]] [-o json|yaml|name|wide]",
    summary: "List VMs (or show one): name, status, node, addresses, time since the status changed, age.",
    text:
      "--refresh asks the VM's node to read the domain now (the refresh-requested-at annotation) and shows\n" +
      "the answer (waits 30 s unless --wait says otherwise); it needs the right to patch the VM.",
    flags: { refresh: "ask the node for the current state now, then print it" },
    examples: ["kubectl vm status", "kubectl vm status -A -o json", "kubectl vm status web --refresh"],
    writes: "mixed",
    gitops: "Reads only; --refresh writes an annotation only, never spec (no GitOps drift).",
  },
  stats: {
    usage: "stats NAME [--wait=DUR] [-o json|yaml]",
    summary: "Ask the node for the VM's statistics now and print them (CPU, memory, disk, network).",
    text: "Sets the refresh-requested-at annotation and waits (30 s by default) for the node's answer.",
    examples: ["kubectl vm stats web", "kubectl vm stats web -o json"],
    writes: "annotations",
  },
  start: {
    usage: "start NAME [--cdrom MEDIA [--once]] [--wait[=DUR]]",
    summary: "Start a VM (runStrategy Manual or Halted).",
    text:
      "runStrategy Manual: sets the start-requested-at annotation to now; the node agent starts the VM once.\n" +
      "runStrategy Halted: sets runStrategy Always. Always, RerunOnFailure, Once: refused, the operator\n" +
      "starts those itself (use restart to reboot). A frozen VM gets the request but its node agent\n" +
      "refuses it (Event StartRefused): unfreeze it first.\n" +
      "--cdrom puts MEDIA in the CD-ROM drive in the same patch: a VMDisk name, or a host path starting\n" +
      "with / (admins only; the node agent judges it). --once boots once from it, then from the disks.",
    flags: {
      cdrom: "VMDisk name (or /host/path) to put in the CD-ROM drive (spec.cdrom)",
      once: "boot from that medium at this start only (spec.cdrom.bootOnce)",
    },
    examples: ["kubectl vm start web --wait", "kubectl vm start web --cdrom rescue-iso --once"],
    writes: "mixed",
    gitops:
      "Manual: annotation only (no drift). Halted, or --cdrom: changes spec (drift: Argo CD/Flux with\n" +
      "self-heal put back what Git says).",
  },
  stop: {
    usage: "stop NAME [--force | --grace-period N] [--wait[=DUR]]",
    summary: "Stop a VM: ACPI shutdown, forced after the grace period.",
    text:
      "Sets the stop-requested-at annotation (its time, and ;grace=N for this stop only) for every run strategy; Always,\n" +
      "RerunOnFailure and Once also get runStrategy Halted, so the operator does not start them again,\n" +
      "as KubeVirt's virtctl does. Stopping a Halted VM again may shorten a stop under way (--force).",
    flags: GRACE_FLAGS,
    examples: [
      "kubectl vm stop web --wait",
      "kubectl vm stop web --force",
      "kubectl vm stop web --grace-period 30",
    ],
    writes: "mixed",
    gitops:
      "Manual and Halted: annotations only (no drift). Other strategies: runStrategy Halted, a spec change (drift).",
  },
  restart: {
    usage: "restart NAME [--force | --grace-period N] [--wait[=DUR]]",
    summary: "Reboot a running VM once (ACPI reboot; --force resets it at once).",
    text: "Sets the restart-requested-at annotation to now (with ;grace=N for this restart only). A frozen VM is refused.",
    flags: {
      force: "reset the VM at once instead of asking the guest (same as --grace-period 0)",
      "grace-period":
        "N seconds for the guest to reboot before it is reset (default: spec.shutdown.gracePeriodSeconds)",
    },
    examples: ["kubectl vm restart web --wait", "kubectl vm restart web --force"],
    writes: "annotations",
  },
  pause: {
    usage: "pause NAME [--wait[=DUR]]",
    summary: "Suspend a running VM's vCPUs (spec.paused true).",
    examples: ["kubectl vm pause web --wait"],
    writes: "spec",
  },
  unpause: {
    usage: "unpause NAME [--wait[=DUR]]",
    summary: "Resume a paused VM (spec.paused false).",
    examples: ["kubectl vm unpause web --wait"],
    writes: "spec",
  },
  freeze: {
    usage: "freeze NAME [--force | --grace-period N] [--wait[=DUR]]",
    summary: "Stop the whole VM and keep it stopped until unfreeze (not a file-system freeze: see fsfreeze).",
    text:
      "Sets the frozen annotation and a stop request. A frozen VM stays stopped whatever asks it to start\n" +
      "(its run strategy, start requests, restarts) and shows status Frozen once off. Seed 004's freeze.",
    flags: GRACE_FLAGS,
    examples: ["kubectl vm freeze web --wait", "kubectl vm freeze web --force"],
    writes: "annotations",
  },
  unfreeze: {
    usage: "unfreeze NAME",
    summary:
      "Let a frozen VM do what its run strategy says again (Always starts it; Manual and Halted stay off).",
    text: "Removes the frozen annotation.",
    examples: ["kubectl vm unfreeze web"],
    writes: "annotations",
  },
  fsfreeze: {
    usage: "fsfreeze NAME [--wait=DUR]",
    summary: "Freeze the guest's file systems through the QEMU guest agent; the VM keeps running.",
    text:
      "Writes are held until fsthaw (e.g. around a storage-side backup). Not the same as freeze, which stops\n" +
      "the VM. Waits for the guest agent's answer (30 s unless --wait says otherwise); fails with its message\n" +
      "when there is no guest agent or the VM is not running.",
    examples: ["kubectl vm fsfreeze web", "kubectl vm fsfreeze web --wait=2m"],
    writes: "annotations",
  },
  fsthaw: {
    usage: "fsthaw NAME [--wait=DUR]",
    summary: "Thaw the guest's file systems frozen by fsfreeze; waits for the guest agent's answer.",
    examples: ["kubectl vm fsthaw web"],
    writes: "annotations",
  },
  snapshot: {
    usage:
      "snapshot VM [--name NAME] [--memory] [--consistent] [--sticky] [--description TEXT] [--wait[=DUR]]",
    summary: "Take a snapshot of VM (a VMSnapshot; default name VM-<UTC time>).",
    flags: {
      name: "name of the VMSnapshot",
      memory: "also save the memory of a running VM (a restore resumes it)",
      consistent: "freeze the guest's file systems through the guest agent while the disks are taken",
      sticky: "keep the snapshot out of automatic rotation",
      description: "a label for the snapshot",
    },
    examples: [
      "kubectl vm snapshot web --name before-upgrade --wait",
      "kubectl vm snapshot web --memory --consistent",
    ],
    writes: "objects",
  },
  snapshots: {
    usage: "snapshots VM [-o json|yaml|name]",
    summary: "List the snapshots of VM.",
    examples: ["kubectl vm snapshots web"],
    writes: "reads",
  },
  "delete-snapshot": {
    usage: "delete-snapshot VM SNAPSHOT",
    summary: "Delete snapshot SNAPSHOT of VM (refused when it is another VM's).",
    examples: ["kubectl vm delete-snapshot web before-upgrade"],
    writes: "objects",
  },
  restore: {
    usage: "restore VM SNAPSHOT [--wait[=DUR]]",
    summary: "Roll VM back to SNAPSHOT (a VMRestore; a running VM is stopped first; its spec is unchanged).",
    examples: ["kubectl vm restore web before-upgrade --wait"],
    writes: "objects",
  },
  rotation: {
    usage: "rotation VM --schedule CRON --keep N [--memory] [--consistent] | rotation VM --off",
    summary:
      "Take automatic snapshots on a schedule and keep the newest N (spec.snapshotPolicy), or stop that.",
    text:
      "CRON has 5 fields in UTC, or @hourly, @daily, @weekly, @monthly, @yearly. --memory and --consistent\n" +
      "are set as given (left out: off); the policy's other fields (exclude, suspend, …) stay.",
    flags: {
      schedule: "when to snapshot (cron, UTC)",
      keep: "how many automatic snapshots to keep",
      memory: "save the memory of a running VM with each",
      consistent: "freeze the guest's file systems for each",
      off: "remove the policy (existing snapshots stay)",
    },
    examples: ["kubectl vm rotation web --schedule '0 */6 * * *' --keep 4", "kubectl vm rotation web --off"],
    writes: "spec",
  },
  clone: {
    usage: "clone VM --from-snapshot SNAPSHOT --to NEW [--wait[=DUR]]",
    summary: "Create VM NEW as a clone of VM at SNAPSHOT (own disks, UUID, MACs and addresses).",
    flags: { "from-snapshot": "a snapshot of VM", to: "name of the new VM" },
    examples: ["kubectl vm clone web --from-snapshot before-upgrade --to web-test --wait"],
    writes: "objects",
  },
  "set-as-template": {
    usage: "set-as-template VM --name TEMPLATE [--description TEXT] [--wait[=DUR]]",
    summary: "Make the stopped VM into a VMTemplate: its disks become the template's bases.",
    text:
      "VM must stay stopped (runStrategy Halted, Manual or Once) and have no snapshots; it never starts again\n" +
      "while its disks are bases. Deleting the template gives the disks back.",
    flags: { name: "name of the VMTemplate", description: "free text" },
    examples: ["kubectl vm set-as-template golden --name base-image --wait"],
    writes: "objects",
  },
  "create-from-template": {
    usage:
      "create-from-template TEMPLATE --name NAME [--amount N] [--start K] [--nodes a,b] [--description TEXT]\n" +
      "                     [--run-strategy STRATEGY] [-o yaml|json|name] [--wait[=DUR]]",
    summary: "Create VMs NAME-K … NAME-(K+N-1) from TEMPLATE (or print them for Git with -o yaml).",
    text:
      "Defaults N=1, K=1. --nodes pins them round-robin (spec.nodeName). -o yaml or -o json prints the VMs\n" +
      "instead of creating them; with --dry-run=server the server checks them without keeping them.",
    flags: {
      name: "name prefix of the VMs",
      amount: "how many VMs",
      start: "number of the first",
      nodes: "comma-separated nodes to spread them over",
      description: "spec.description of each",
      "run-strategy": "spec.runStrategy of each (default: the template's)",
    },
    examples: [
      "kubectl vm create-from-template small --name web --amount 3 --start 5 --wait",
      "kubectl vm create-from-template small --name web --amount 3 -o yaml > web.yaml",
    ],
    writes: "objects",
  },
  children: {
    usage: "children TEMPLATE [-o json|yaml|name|wide]",
    summary: "List the VMs made from TEMPLATE.",
    examples: ["kubectl vm children small"],
    writes: "reads",
  },
  targets: {
    usage: "targets TEMPLATE [-o json|yaml|name]",
    summary: "List the nodes a VM made from TEMPLATE can run on now.",
    examples: ["kubectl vm targets small"],
    writes: "reads",
  },
  "cdrom insert": {
    usage: "cdrom insert VM MEDIA [--wait[=DUR]]",
    summary: "Put MEDIA in the VM's CD-ROM drive (live on a running VM).",
    text: "MEDIA is a VMDisk holding the image, or a host path starting with / (admins only; the node agent judges it).",
    examples: ["kubectl vm cdrom insert web rescue-iso"],
    writes: "spec",
  },
  "cdrom eject": {
    usage: "cdrom eject VM [--wait[=DUR]]",
    summary: "Empty the VM's CD-ROM drive (the drive stays).",
    examples: ["kubectl vm cdrom eject web"],
    writes: "spec",
  },
  "disk attach": {
    usage: "disk attach VM DISK [--name NAME] [--bus virtio|scsi|sata|ide] [--boot-order N] [--wait[=DUR]]",
    summary: "Attach VMDisk DISK to VM (appended to spec.disks; refused when already there).",
    flags: {
      name: "the disk's name inside the VM (default: DISK)",
      bus: "bus the guest sees it on (default virtio)",
      "boot-order": "position in the boot order (1 boots first)",
    },
    examples: [
      "kubectl vm disk attach web data-1",
      "kubectl vm disk attach web data-2 --bus scsi --name data",
    ],
    writes: "spec",
  },
  "disk activate": {
    usage: "disk activate VM DISK [--wait[=DUR]]",
    summary: "Connect a deactivated disk again (spec.disks[].active true; hot-plugged on a running VM).",
    examples: ["kubectl vm disk activate web data-1"],
    writes: "spec",
  },
  "disk deactivate": {
    usage: "disk deactivate VM DISK [--wait[=DUR]]",
    summary:
      "Disconnect a disk but keep it listed (spec.disks[].active false; hot-unplugged on a running VM).",
    examples: ["kubectl vm disk deactivate web data-1"],
    writes: "spec",
  },
  "disk detach": {
    usage: "disk detach VM DISK [--wait[=DUR]]",
    summary: "Remove a disk from the VM (from spec.disks; the VMDisk itself stays).",
    examples: ["kubectl vm disk detach web data-1"],
    writes: "spec",
  },
};

const GLOBAL_FLAGS = `Global flags (before or after the verb, as with kubectl):
  -n, --namespace NS       namespace (default: the context's, else "default")
  -A, --all-namespaces     every namespace (status)
      --context NAME       kubeconfig context
      --kubeconfig FILE    kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)
  -o, --output FORMAT      json|yaml|name|wide where the verb lists or writes
      --dry-run=server     let the API server check a write without keeping it
      --wait[=DURATION]    wait until the work is done (default 5m), showing progress on stderr;
                           exit 1 with the object's condition message when it fails
`;

const UNKNOWN = (word: string) =>
  new UsageError(`unknown command "${word}" for "kubectl vm"\nRun 'kubectl vm help' for usage.`);

function gitopsText(h: VerbHelp): string {
  return h.writes === "mixed" ? (h.gitops ?? "") : GITOPS[h.writes];
}

function verbText(name: string): string {
  const h = VERB_HELP[name];
  if (!h) throw UNKNOWN(name);
  const kinds = findVerb(name)?.flags ?? {};
  // "--grace-period N", "--name VALUE", "--force": what the flag takes, as in the usage line.
  const flags = Object.entries(h.flags ?? {}).map(([f, d]): [string, string] => {
    const kind = kinds[f];
    return [`--${f}${kind === "int" ? " N" : kind === "string" ? " VALUE" : ""}`, d];
  });
  const width = Math.max(0, ...flags.map(([f]) => f.length)) + 3;
  return [
    `${h.summary}\n\n`,
    h.text ? `${h.text}\n\n` : "",
    `GitOps: ${gitopsText(h)}\n`,
    `\nUsage:\n  kubectl vm ${h.usage}\n`,
    flags.length ? `\nFlags:\n${flags.map(([f, d]) => `  ${f.padEnd(width)}${d}`).join("\n")}\n` : "",
    `\nExamples:\n${h.examples.map((e) => `  ${e}`).join("\n")}\n`,
  ].join("");
}

/** Help for WORDS: nothing (every verb), a verb, a group ("disk"), or a group's sub-verb. */
export function helpText(words: readonly string[] = []): string {
  const [first, second] = words;
  if (first && VERB_GROUPS.includes(first)) {
    if (second) return `${verbText(`${first} ${second}`)}\n${GLOBAL_FLAGS}`;
    return `${subVerbs(first)
      .map((sub) => verbText(`${first} ${sub}`))
      .join("\n")}\n${GLOBAL_FLAGS}`;
  }
  if (first) {
    if (!findVerb(first)) throw UNKNOWN(first);
    return `${verbText(first)}\n${GLOBAL_FLAGS}`;
  }
  const width = Math.max(...VERBS.map((v) => v.name.length)) + 2;
  const lines = VERBS.map((v) => `  ${v.name.padEnd(width)}${VERB_HELP[v.name]?.summary ?? ""}`);
  return (
    "kubectl vm: work with libvirt-operator VirtualMachines, snapshots and templates.\n" +
    "Every verb acts through the API server, so RBAC decides who may do what.\n\n" +
    `Verbs:\n${lines.join("\n")}\n\n` +
    "Under Argo CD or Flux: pause, unpause, rotation, cdrom and disk change spec (drift, undone by\n" +
    "self-heal); so do start of a Halted VM and stop of one that is not Manual or Halted. restart,\n" +
    "freeze, unfreeze, fsfreeze, fsthaw, stats, status --refresh and a Manual VM's start/stop write\n" +
    "annotations only. snapshot, restore, clone, set-as-template, create-from-template make new objects.\n\n" +
    `Usage:\n  kubectl vm VERB [ARGS] [FLAGS]\n  kubectl vm help VERB\n\n${GLOBAL_FLAGS}`
  );
}

/** Every verb and group a user can type first, with its one-line summary (for completion). */
export function verbSummaries(): Array<[string, string]> {
  return topLevelWords().map((w) => [w, VERB_HELP[w]?.summary ?? `${w} ${subVerbs(w).join("|")}`]);
}

/** One line about a sub-verb (for completion). */
export function subVerbSummary(group: string, sub: string): string {
  return VERB_HELP[`${group} ${sub}`]?.summary ?? "";
}
