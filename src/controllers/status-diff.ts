// Pure: whether applying DESIRED (the fields one writer owns) would change CURRENT.
import { isDeepStrictEqual } from "node:util";

/** List-map status fields: their key, and whether the writer owns the whole set of elements. */
export interface ListMapRule {
  key: string;
  /** True: elements missing from DESIRED are a change (this writer decides the set). */
  ownsSet: boolean;
}

export const CONDITIONS_RULE: ListMapRule = { key: "type", ownsSet: false };

type Item = Record<string, unknown>;

export function ownedStatusChanged(
  current: Record<string, unknown> | undefined,
  desired: Record<string, unknown>,
  ownedFields: readonly string[],
  listMaps: Record<string, ListMapRule> = { conditions: CONDITIONS_RULE },
): boolean {
  const cur = current ?? {};
  return ownedFields.some((f) => {
    const rule = listMaps[f];
    return rule ? listMapChanged(cur[f], desired[f], rule) : !isDeepStrictEqual(cur[f], desired[f]);
  });
}

/** Elements are matched by key; only the fields this writer sets are compared. */
function listMapChanged(current: unknown, desired: unknown, rule: ListMapRule): boolean {
  const want = (desired as Item[] | undefined) ?? [];
  const have = (current as Item[] | undefined) ?? [];
  const changed = want.some((w) => {
    const h = have.find((x) => x[rule.key] === w[rule.key]);
    return !h || Object.keys(w).some((k) => !isDeepStrictEqual(h[k], w[k]));
  });
  if (changed || !rule.ownsSet) return changed;
  return have.some((h) => !want.some((w) => w[rule.key] === h[rule.key]));
}
