// `kubectl vm help [verb]`: what each verb does, what it writes (spec or annotations, which
// matters under Argo CD/Flux), and its flags.
import { findVerb, UsageError, VERBS } from "./args.ts";

const GLOBAL_FLAGS = `Global flags (before or after the verb, as with kubectl):
  -n, --namespace NS       namespace (default: the context's, else "default")
  -A, --all-namespaces     every namespace (status)
      --context NAME       kubeconfig context
      --kubeconfig FILE    kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)
  -o, --output FORMAT      json|yaml|name|wide where the verb lists or writes
      --dry-run=server     let the API server check a write without keeping it
      --wait[=DURATION]    wait for the work to finish (default 5m) — not implemented yet
`;

const VERB_HELP: Record<string, { usage: string; text: string }> = {
  help: { usage: "help [VERB]", text: "Show help for kubectl vm or one verb." },
  status: {
    usage: "status [NAME] [-A] [-o json|yaml|name|wide]",
    text: "List VMs (or show one): name, status, node, IPv4 addresses, time since the status changed, age.",
  },
  start: {
    usage: "start NAME",
    text:
      "Start a VM. runStrategy Manual: sets the start-requested-at annotation to now (spec unchanged).\n" +
      "runStrategy Halted: sets runStrategy Always (a spec change: Argo CD/Flux will see drift and may undo it).\n" +
      "Always, RerunOnFailure, Once: refused, the operator starts those itself (use restart to reboot).",
  },
  stop: {
    usage: "stop NAME",
    text:
      "Stop a VM gracefully. runStrategy Manual: sets the stop-requested-at annotation to now (spec unchanged).\n" +
      "Any other strategy: sets runStrategy Halted, as KubeVirt's virtctl does (a spec change: GitOps drift).",
  },
  restart: {
    usage: "restart NAME",
    text: "Reboot a VM once: sets the restart-requested-at annotation to now (spec unchanged).",
  },
  pause: {
    usage: "pause NAME",
    text: "Suspend a running VM's vCPUs: sets spec.paused true (a spec change).",
  },
  unpause: { usage: "unpause NAME", text: "Resume a paused VM: sets spec.paused false (a spec change)." },
  snapshot: {
    usage: "snapshot VM [--name NAME] [--memory] [--consistent] [--sticky] [--description TEXT]",
    text:
      "Create a VMSnapshot of VM (default name VM-<UTC time>). --memory also saves the memory of a running\n" +
      "VM; --consistent freezes the guest's file systems through the guest agent while the disks are taken;\n" +
      "--sticky keeps the snapshot out of automatic rotation.",
  },
  snapshots: { usage: "snapshots VM [-o json|yaml|name]", text: "List the VMSnapshots of VM." },
  restore: {
    usage: "restore VM SNAPSHOT",
    text: "Roll VM back to SNAPSHOT: creates a VMRestore (a running VM is stopped first; its spec is unchanged).",
  },
  "create-from-template": {
    usage:
      "create-from-template TEMPLATE --name NAME [--amount N] [--start K] [--nodes a,b] [--description TEXT]\n" +
      "                     [--run-strategy STRATEGY] [-o yaml|json|name]",
    text:
      "Create N VirtualMachines NAME-K … NAME-(K+N-1) (defaults N=1, K=1) from TEMPLATE, pinned round-robin to\n" +
      "--nodes (spec.nodeName) when given. -o yaml or -o json prints them instead of creating them (for Git).",
  },
  children: { usage: "children TEMPLATE [-o json|yaml|name|wide]", text: "List the VMs made from TEMPLATE." },
  targets: {
    usage: "targets TEMPLATE [-o json|yaml|name]",
    text: "List the nodes a VM made from TEMPLATE can run on now.",
  },
};

export function helpText(verbName?: string): string {
  if (verbName) {
    const verb = findVerb(verbName);
    const h = VERB_HELP[verbName];
    if (!verb || !h)
      throw new UsageError(
        `unknown command "${verbName}" for "kubectl vm"\nRun 'kubectl vm help' for usage.`,
      );
    return `${h.text}\n\nUsage:\n  kubectl vm ${h.usage}\n\n${GLOBAL_FLAGS}`;
  }
  const width = Math.max(...VERBS.map((v) => v.name.length)) + 2;
  const lines = VERBS.map(
    (v) => `  ${v.name.padEnd(width)}${(VERB_HELP[v.name]?.text ?? "").split("\n")[0]}`,
  );
  return (
    "kubectl vm: work with libvirt-operator VirtualMachines, snapshots and templates.\n" +
    "Every verb acts through the API server, so RBAC decides who may do what.\n\n" +
    `Verbs:\n${lines.join("\n")}\n\nUsage:\n  kubectl vm VERB [ARGS] [FLAGS]\n  kubectl vm help VERB\n\n${GLOBAL_FLAGS}`
  );
}
