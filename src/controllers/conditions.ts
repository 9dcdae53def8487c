// Conditions as kubebuilder's meta.SetStatusCondition: lastTransitionTime moves only when
// the status flips, so unchanged observations write nothing.

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export function setCondition(
  conditions: readonly Condition[],
  next: Omit<Condition, "lastTransitionTime">,
  now: Date,
): Condition[] {
  const existing = conditions.find((c) => c.type === next.type);
  const lastTransitionTime =
    existing && existing.status === next.status ? existing.lastTransitionTime : now.toISOString();
  const updated: Condition = { ...next, lastTransitionTime };
  return existing ? conditions.map((c) => (c.type === next.type ? updated : c)) : [...conditions, updated];
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/**
 * The conditions one writer applies: WANTED set on an object's current conditions at its
 * GENERATION, and only the types it sets (other writers' conditions stay theirs).
 */
export function writerConditions(
  current: readonly Condition[] | undefined,
  wanted: ReadonlyArray<Omit<Condition, "lastTransitionTime" | "observedGeneration">>,
  generation: number,
  now: Date,
): Condition[] {
  let all = [...(current ?? [])];
  for (const c of wanted) all = setCondition(all, { ...c, observedGeneration: generation }, now);
  return ownConditions(
    all,
    wanted.map((c) => c.type),
  );
}

/** Only these condition types are written by OWNER; others' conditions are left out of its apply. */
export function ownConditions(conditions: readonly Condition[], types: readonly string[]): Condition[] {
  return conditions.filter((c) => types.includes(c.type));
}
