// Pure: a kind definition → a CustomResourceDefinition (apiextensions.k8s.io/v1).
// TypeBox schemas carry a few keywords a structural CRD schema does not allow; this keeps
// only what the API server understands and rewrites the rest into its dialect.
import type { TSchema } from "@sinclair/typebox";
import { CATEGORY } from "./common.ts";
import type { KindDefinition } from "./kind.ts";
import { GROUP, VERSION } from "./names.ts";

type JsonSchemaProps = Record<string, unknown>;

const COPIED_KEYWORDS = [
  "type",
  "description",
  "enum",
  "default",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "minLength",
  "maxLength",
  "pattern",
  "format",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
  "nullable",
  "x-kubernetes-validations",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
  "x-kubernetes-preserve-unknown-fields",
] as const;

/** Converts one TypeBox schema into OpenAPI v3 as a structural CRD schema accepts it. */
export function toOpenApi(schema: TSchema): JsonSchemaProps {
  const s = schema as Record<string, unknown>;
  if (s["x-kubernetes-int-or-string"]) {
    return pick(s, ["description", "pattern", "minimum", "x-kubernetes-validations"], {
      "x-kubernetes-int-or-string": true,
      anyOf: [{ type: "integer" }, { type: "string" }],
    });
  }
  if (s.anyOf || s.oneOf || s.allOf || s.not) {
    throw new Error(
      `unsupported schema construct for a CRD (use StringEnum or Quantity): ${JSON.stringify(s)}`,
    );
  }
  const out = pick(s, COPIED_KEYWORDS, {});
  if (s.properties) {
    const props = s.properties as Record<string, TSchema>;
    out.properties = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, toOpenApi(v)]));
    const required = (s.required as string[] | undefined) ?? [];
    if (required.length > 0) out.required = [...required];
  }
  if (s.items) out.items = toOpenApi(s.items as TSchema);
  // Type.Record produces patternProperties; a CRD map is additionalProperties.
  const patternProps = s.patternProperties as Record<string, TSchema> | undefined;
  if (patternProps) {
    const [valueSchema] = Object.values(patternProps);
    if (valueSchema) out.additionalProperties = toOpenApi(valueSchema);
  }
  if (s.type === "object" && !s.properties && !patternProps && Object.keys(out).length <= 2) {
    // An object with no fields (e.g. source.blank: {}) must still be allowed to exist.
    out.type = "object";
  }
  return out;
}

function pick(from: Record<string, unknown>, keys: readonly string[], into: JsonSchemaProps) {
  for (const k of keys) {
    if (from[k] !== undefined) into[k] = structuredClone(from[k]);
  }
  return into;
}

export function crdName(def: KindDefinition): string {
  return `${def.plural}.${GROUP}`;
}

export function buildCrd(def: KindDefinition): Record<string, unknown> {
  const rootSchema: JsonSchemaProps = {
    type: "object",
    description: def.description,
    properties: {
      apiVersion: {
        type: "string",
        description: "APIVersion defines the versioned schema of this representation of an object.",
      },
      kind: { type: "string", description: "Kind is a string value representing the REST resource." },
      metadata: { type: "object" },
      spec: toOpenApi(def.spec),
      // Every object reads as judged at generation 0 until the operator writes: kstatus (and
      // so Flux and kubectl-style waits) then sees "in progress", not "current", from the moment
      // the object is created.
      status: { ...toOpenApi(def.status), default: { observedGeneration: 0 } },
    },
    required: def.specRequired === false ? [] : ["spec"],
  };
  if (def.rootRules?.length) rootSchema["x-kubernetes-validations"] = def.rootRules;
  if ((rootSchema.required as string[]).length === 0) delete rootSchema.required;
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: crdName(def) },
    spec: {
      group: GROUP,
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: def.shortNames,
        categories: [CATEGORY],
      },
      scope: "Namespaced",
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: rootSchema },
          subresources: { status: {} },
          additionalPrinterColumns: def.printerColumns,
        },
      ],
    },
  };
}
