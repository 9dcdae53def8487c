// Completion's names from the API server: only what the position needs (a snapshot list by its
// VM's label, one VM for its disks), each request with a short deadline.

import { GROUP, VERSION, VM_NAME_LABEL } from "../api/names.ts";
import type { VirtualMachine } from "../api/virtualmachine.ts";
import { contextNames } from "../kube/kubeconfig.ts";
import { connect, type PluginClient } from "./client.ts";
import { type CompletionSource, complete, completionOutput, DIRECTIVE } from "./complete.ts";
import { DISK, SNAPSHOT, TEMPLATE, VM } from "./kinds.ts";

/** A completion must feel instant; a slow API server gets no say. */
const COMPLETION_DEADLINE_MS = 2_000;

const PLURALS = { vm: VM.plural, snapshot: SNAPSHOT.plural, template: TEMPLATE.plural, vmdisk: DISK.plural };

type Named = { metadata: { name: string } };

/** The value of a global flag among WORDS ("-n ns", "--namespace=ns"). */
function flagValue(words: readonly string[], names: string[]): string | undefined {
  for (let i = 0; i < words.length - 1; i++) {
    const word = words[i] as string;
    if (names.includes(word)) return words[i + 1];
    const long = names.find((n) => n.startsWith("--") && word.startsWith(`${n}=`));
    if (long) return word.slice(long.length + 1);
  }
  return undefined;
}

/** cobra's __complete output for WORDS; on any error no candidates, no file completion. */
export async function completionFor(words: readonly string[]): Promise<string> {
  let client: PluginClient | undefined;
  const connection = async () => {
    client ??= await connect(
      {
        kubeconfig: flagValue(words, ["--kubeconfig"]),
        context: flagValue(words, ["--context"]),
        namespace: flagValue(words, ["-n", "--namespace"]),
      },
      COMPLETION_DEADLINE_MS,
    );
    return client;
  };
  const source: CompletionSource = {
    names: async (kind, _namespace, vm) => {
      const c = await connection();
      const list = (await c.custom.listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: c.namespace,
        plural: PLURALS[kind],
        ...(vm ? { labelSelector: `${VM_NAME_LABEL}=${vm}` } : {}),
      })) as { items: Named[] };
      return list.items.map((o) => o.metadata.name);
    },
    vmDisks: async (vm) => {
      const c = await connection();
      const got = (await c.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: c.namespace,
        plural: VM.plural,
        name: vm,
      })) as VirtualMachine;
      return (got.spec.disks ?? []).map((d) => d.name);
    },
    namespaces: async () => {
      const list = (await (await connection()).get("/api/v1/namespaces")) as { items: Named[] };
      return list.items.map((n) => n.metadata.name);
    },
    // From the files, not through connect: completing --context works when the current one is broken.
    contexts: (kubeconfig) => contextNames(kubeconfig),
  };
  try {
    return completionOutput(await complete(words, source));
  } catch {
    return `:${DIRECTIVE.noFileComp}\n`;
  } finally {
    client?.close();
  }
}
