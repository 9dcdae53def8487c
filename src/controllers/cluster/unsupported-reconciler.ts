// Kinds the API accepts but this operator version does not act on yet (VMTemplate): each
// object says so in status (phase Failed, Stalled with the reason), so
// nobody — user, Flux, Argo CD — takes a snapshot or template that nothing made for done.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { KindDefinition } from "../../api/kind.ts";
import { VMTemplateKind } from "../../api/vmtemplate.ts";
import type { Kube } from "../../runtime/kube.ts";
import { splitKey } from "../../runtime/kube.ts";
import { type Watchable, watchOwn } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import { type Condition, standingConditions, writerConditions } from "../conditions.ts";
import { StatusWriter } from "../status-writer.ts";

export const UNSUPPORTED_KINDS: readonly KindDefinition[] = [VMTemplateKind];
const FIELD_MANAGER = "libvirt-operator-controller";

type Obj = KubernetesObject & { status?: { conditions?: Condition[] } };

interface Lister {
  get(name: string, namespace?: string): Obj | undefined;
}

/** Pure: the status an object of an unsupported KIND gets. */
export function unsupportedStatus(kind: KindDefinition, obj: Obj, now: Date): Record<string, unknown> {
  const message = `${kind.kind} is not supported by this operator version yet: nothing acts on it`;
  const generation = obj.metadata?.generation ?? 0;
  return {
    observedGeneration: generation,
    phase: "Failed",
    conditions: writerConditions(
      obj.status?.conditions,
      standingConditions({ state: "stalled", reason: "NotSupported", message }),
      generation,
      now,
    ),
  };
}

export class UnsupportedKindReconciler {
  readonly kind: KindDefinition;
  private readonly cache: Lister;
  private readonly status: StatusWriter;

  constructor(kube: Kube, kind: KindDefinition, cache: Lister) {
    this.kind = kind;
    this.cache = cache;
    this.status = new StatusWriter(kube, { kind, fieldManager: FIELD_MANAGER });
  }

  watch(queue: WorkQueue, informer: Watchable<Obj>): void {
    watchOwn(informer, queue);
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const obj = this.cache.get(name, namespace);
    if (!obj || obj.metadata?.deletionTimestamp) return undefined;
    await this.status.write(
      obj as Obj & { metadata: { name: string } },
      unsupportedStatus(this.kind, obj, new Date()),
    );
    return undefined;
  }
}
