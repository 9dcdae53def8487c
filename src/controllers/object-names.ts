// Names the operator gives objects it makes for a tenant (a clone's disks, automatic
// snapshots): readable, within HOST_NAME_MAX, unique by a hash when shortened.
import { createHash } from "node:crypto";
import { HOST_NAME_MAX } from "../api/names.ts";

/** PREFIX + SUFFIX, or, when too long, the start of it and a hash of all of it. */
export function derivedName(prefix: string, suffix: string): string {
  const name = `${prefix}${suffix}`;
  if (name.length <= HOST_NAME_MAX) return name;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 10);
  return `${name.slice(0, HOST_NAME_MAX - hash.length - 1).replace(/[-.]+$/, "")}-${hash}`;
}
