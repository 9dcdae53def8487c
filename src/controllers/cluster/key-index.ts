// Objects by the values they have (a VM by each MAC it holds, a disk by the VMs it is attached
// to), kept up to date one object at a time from informer events: a lookup is one map read
// instead of a walk over every object.
import type { KubernetesObject } from "@kubernetes/client-node";
import { keyOf } from "../../runtime/kube.ts";
import type { Watchable } from "../../runtime/watch.ts";

const NONE: ReadonlySet<string> = new Set();

export class KeyIndex {
  private readonly byValue = new Map<string, Set<string>>();
  private readonly valuesOf = new Map<string, readonly string[]>();
  /** Told of each value a key let go of. */
  private readonly released?: (value: string) => void;

  constructor(released?: (value: string) => void) {
    this.released = released;
  }

  /** KEY has VALUES now (in place of what it had). */
  set(key: string, values: Iterable<string>): void {
    const given = Array.isArray(values) ? (values as string[]) : [...values];
    const now = given.length > 1 ? [...new Set(given)] : given;
    const before = this.valuesOf.get(key) ?? [];
    // Most updates change none of what is indexed.
    if (before.length === now.length && before.every((v, i) => v === now[i])) return;
    for (const v of before) if (!now.includes(v)) this.remove(v, key);
    for (const v of now) {
      const keys = this.byValue.get(v) ?? new Set<string>();
      keys.add(key);
      this.byValue.set(v, keys);
    }
    if (now.length) this.valuesOf.set(key, now);
    else this.valuesOf.delete(key);
  }

  delete(key: string): void {
    this.set(key, []);
  }

  /** The keys that have VALUE. */
  keys(value: string): ReadonlySet<string> {
    return this.byValue.get(value) ?? NONE;
  }

  /** Some key other than EXCEPT has VALUE. */
  heldByOther(value: string, except: string): boolean {
    const keys = this.byValue.get(value);
    return keys !== undefined && (keys.size > 1 || (keys.size === 1 && !keys.has(except)));
  }

  private remove(value: string, key: string) {
    const keys = this.byValue.get(value);
    keys?.delete(key);
    if (keys?.size === 0) this.byValue.delete(value);
    this.released?.(value);
  }
}

/** An index of INFORMER's objects by the values VALUES_OF gives for each, kept up to date. */
export function indexBy<T extends KubernetesObject>(
  informer: Watchable<T>,
  valuesOf: (obj: T) => Iterable<string>,
): KeyIndex {
  const index = new KeyIndex();
  for (const verb of ["add", "update"] as const)
    informer.on(verb, (obj) => index.set(keyOf(obj), valuesOf(obj)));
  informer.on("delete", (obj) => index.delete(keyOf(obj)));
  return index;
}
