// Building blocks shared by every kind: group/version, conditions, quantities and the
// small schema helpers that keep descriptions and CEL rules next to the field they judge.
import { type SchemaOptions, type TSchema, Type } from "@sinclair/typebox";
import { HOST_NAME_MAX } from "./names.ts";
import { POSITIVE_QUANTITY_PATTERN } from "./quantity.ts";

export const CATEGORY = "libvirt";

/** A CEL rule the API server evaluates (`x-kubernetes-validations`). */
export interface CelRule {
  rule: string;
  message: string;
  /** Field path the error names, relative to the schema the rule sits on (e.g. `.uuid`). */
  fieldPath?: string;
  reason?: "FieldValueInvalid" | "FieldValueForbidden" | "FieldValueRequired" | "FieldValueDuplicate";
}

/** Attaches CEL rules to a schema; they reach the CRD and are ignored by ajv. */
export function withRules<T extends TSchema>(schema: T, ...rules: CelRule[]): T {
  const existing = (schema as Record<string, unknown>)["x-kubernetes-validations"] as CelRule[] | undefined;
  return { ...schema, "x-kubernetes-validations": [...(existing ?? []), ...rules] };
}

/** Rule for a field that may be set once at creation and never changed afterwards. */
export function immutable(what: string): CelRule {
  return { rule: "self == oldSelf", message: `${what} is immutable` };
}

/** Rule, on a parent object, that an optional child may be neither added nor removed later. */
export function presenceImmutable(field: string, what: string): CelRule {
  return {
    rule: `has(self.${field}) == has(oldSelf.${field})`,
    message: `${what} cannot be added or removed after creation`,
    fieldPath: `.${field}`,
  };
}

/** Stable string enum: a union of literals that becomes `enum` in the CRD. */
export function StringEnum<const T extends readonly string[]>(values: T, options: SchemaOptions) {
  return Type.Unsafe<T[number]>({ type: "string", enum: [...values], ...options });
}

export const NAME_MAX = 253;

/** Name of another object in the same namespace (a DNS subdomain, as Kubernetes names are). */
export function ObjectName(description: string, options: SchemaOptions = {}) {
  return Type.String({
    description,
    minLength: 1,
    maxLength: NAME_MAX,
    pattern: "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
    ...options,
  });
}

/** Root rule: the object's name fits HOST_NAME_MAX, said with the reason. */
export function nameFitsHost(kind: string): CelRule {
  return {
    rule: `size(self.metadata.name) <= ${HOST_NAME_MAX}`,
    message:
      `metadata.name: a ${kind} name may have at most ${HOST_NAME_MAX} characters, so that ` +
      "<namespace>_<name> and the file name extensions the node adds fit libvirt's and the file system's " +
      "255-byte limit",
  };
}

/** Names that become libvirt or file names: letters, digits, '_', '.' and '-'. */
export const SAFE_NAME_PATTERN = "^[a-zA-Z0-9_.-]+$";

/**
 * A size: a Kubernetes quantity string (`1Gi`, `512Mi`) or integer bytes, positive.
 * A pattern (not CEL) judges it, so it costs nothing inside lists; `parseQuantity` reads it in code.
 */
export function Quantity(description: string) {
  return Type.Union([Type.Integer(), Type.String({ maxLength: 64 })], {
    description: `${description} A Kubernetes quantity such as 1Gi or 512Mi, or integer bytes.`,
    "x-kubernetes-int-or-string": true,
    pattern: POSITIVE_QUANTITY_PATTERN,
    minimum: 1,
  });
}

/** A grow-only rule for a quantity field of the object the rule sits on. */
export function growOnly(field: string, what: string): CelRule {
  return {
    rule:
      `!isQuantity(string(self.${field})) || !isQuantity(string(oldSelf.${field})) || ` +
      `quantity(string(self.${field})).compareTo(quantity(string(oldSelf.${field}))) >= 0`,
    message: `${what} can only grow; shrinking is not supported`,
    fieldPath: `.${field}`,
  };
}

/** A metav1.Condition, as every kind reports them. */
export const Condition = Type.Object(
  {
    type: Type.String({
      description: "Type of condition in CamelCase, e.g. Ready.",
      maxLength: 316,
      pattern:
        "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    }),
    status: StringEnum(["True", "False", "Unknown"] as const, {
      description: "Status of the condition: True, False or Unknown.",
    }),
    observedGeneration: Type.Optional(
      Type.Integer({
        description: "The .metadata.generation the condition was set against.",
        minimum: 0,
      }),
    ),
    lastTransitionTime: Type.String({
      description: "Last time the condition changed from one status to another.",
      format: "date-time",
    }),
    reason: Type.String({
      description: "Programmatic identifier in CamelCase for the last transition.",
      minLength: 1,
      maxLength: 1024,
      pattern: "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    }),
    message: Type.String({
      description: "Human readable message with details about the last transition.",
      maxLength: 32768,
    }),
  },
  { description: "A condition in the metav1.Condition shape." },
);

export function Conditions() {
  return Type.Array(Condition, {
    description:
      "Latest observations of the object's state, keyed by type. Exactly one of Ready, Reconciling " +
      "and Stalled is True: Ready when the object is as its spec asks (a VM stopped as asked is " +
      "Ready), Reconciling while it gets there, Stalled when it cannot without you (reason and " +
      "message say why). Each carries the generation it judged.",
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
    maxItems: 16,
  });
}

export function ObservedGeneration() {
  return Type.Integer({
    description: "The .metadata.generation the controller last acted on.",
    minimum: 0,
  });
}

/** A list of objects keyed by their `name` field, so server-side apply merges by name. */
export function NamedList<T extends TSchema>(item: T, description: string, maxItems: number) {
  return Type.Array(item, {
    description,
    maxItems,
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
  });
}

export function Timestamp(description: string) {
  return Type.String({ description, format: "date-time" });
}

/** Status block every kind carries: what the controller observed and concluded. */
export const LastOperation = Type.Object(
  {
    type: Type.String({ description: "What was done: Start, Stop, Reboot, Snapshot, Resize, …" }),
    phase: StringEnum(["Pending", "Running", "Succeeded", "Failed"] as const, {
      description: "Progress of the operation.",
    }),
    startedAt: Type.Optional(Timestamp("When the operation began.")),
    completedAt: Type.Optional(Timestamp("When the operation ended.")),
    message: Type.Optional(Type.String({ description: "Outcome or error in words.", maxLength: 4096 })),
  },
  {
    description:
      "The last operation the operator carried out on the object (create, start, stop, snapshot …).",
  },
);
