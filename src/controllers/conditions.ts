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

/**
 * Where an object stands, as Flux, Argo CD and kstatus read it: as its spec asks (Ready),
 * still converging (Reconciling), or unable to get there without the user (Stalled).
 */
export interface Standing {
  state: "ready" | "reconciling" | "stalled";
  reason: string;
  message: string;
}

export const STANDING_CONDITIONS = ["Ready", "Reconciling", "Stalled"] as const;

/** Scheduled=True of an object placed on NODE: said alike by the controller and the node agent. */
export function scheduledCondition(
  node: string,
): Omit<Condition, "lastTransitionTime" | "observedGeneration"> {
  return { type: "Scheduled", status: "True", reason: "Scheduled", message: `placed on node ${node}` };
}

/** Ready, Reconciling and Stalled for STANDING: exactly one of them is True. */
export function standingConditions(
  s: Standing,
): Array<Omit<Condition, "lastTransitionTime" | "observedGeneration">> {
  const one = (type: string, state: Standing["state"], idle: string) =>
    s.state === state
      ? { type, status: "True" as const, reason: s.reason, message: s.message }
      : { type, status: "False" as const, reason: idle, message: "" };
  return [
    s.state === "ready"
      ? { type: "Ready", status: "True", reason: s.reason, message: s.message }
      : { type: "Ready", status: "False", reason: s.reason, message: s.message },
    one("Reconciling", "reconciling", s.state === "ready" ? "Reconciled" : "Stalled"),
    one("Stalled", "stalled", s.state === "ready" ? "Reconciled" : "Progressing"),
  ];
}
