// Pure: whether applying DESIRED (the fields one writer owns) would change CURRENT.
import { isDeepStrictEqual } from "node:util";

export function ownedStatusChanged(
  current: Record<string, unknown> | undefined,
  desired: Record<string, unknown>,
  ownedFields: readonly string[],
): boolean {
  const cur = current ?? {};
  return ownedFields.some((f) => {
    const a = cur[f];
    const b = desired[f];
    if (f === "conditions") return !conditionsEqual(a, b);
    return !isDeepStrictEqual(a, b);
  });
}

/** Conditions compare as a set of this writer's types (others' conditions live in the same list). */
function conditionsEqual(current: unknown, desired: unknown): boolean {
  const want = (desired as Array<{ type: string }> | undefined) ?? [];
  const have = (current as Array<{ type: string }> | undefined) ?? [];
  return want.every((w) =>
    isDeepStrictEqual(
      have.find((h) => h.type === w.type),
      w,
    ),
  );
}
