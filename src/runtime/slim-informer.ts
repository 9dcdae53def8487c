// Informers whose caches keep less of each object. metadata.managedFields (every field manager's
// field set: on our VMs, with four writers, larger than the rest of the object) is read by
// nothing of ours, and a Node's status.images (every image pulled there) by nothing either;
// with 1000 VMs cached they were most of the controller's live heap. They are dropped as an
// object arrives, from the list and from each watch event, before any handler or cache sees it.
// Writes are unaffected: an update without managedFields leaves the server's as they are, and
// our metadata and status patches never carry them.
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from "@kubernetes/client-node";

/** Drops from OBJ (freshly parsed, so changed in place) the fields no reader of our caches uses. */
export function slimmed<T>(obj: T): T {
  const o = obj as { metadata?: { managedFields?: unknown }; status?: { images?: unknown } } | undefined;
  if (o?.metadata?.managedFields !== undefined) delete o.metadata.managedFields;
  if (o?.status?.images !== undefined) delete o.status.images;
  return obj;
}

/** A Watch whose events carry slimmed objects. */
class SlimWatch extends Watch {
  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    return super.watch(
      path,
      queryParams,
      (phase, obj, watchObj) => callback(phase, slimmed(obj), watchObj),
      done,
    );
  }
}

/** makeInformer (client-node's list + watch + cache) over slimmed objects. */
export function makeSlimInformer<T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  list: () => Promise<KubernetesListObject<T>>,
  labelSelector?: string,
): ListWatch<T> {
  const slimList = async () => {
    const result = await list();
    for (const item of result.items) slimmed(item);
    return result;
  };
  return new ListWatch<T>(path, new SlimWatch(kc), slimList, false, labelSelector);
}
