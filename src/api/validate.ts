// The controller's second line of validation: the same schemas the API server enforces,
// checked with ajv, so an object that slipped past (older CRD, direct etcd write) still
// gets a clear message before anything reaches libvirt.
import type { TSchema } from "@sinclair/typebox";
import { Ajv, type ErrorObject } from "ajv";
import addFormatsModule from "ajv-formats";
import type { KindDefinition } from "./kind.ts";
import { POSITIVE_QUANTITY_PATTERN } from "./quantity.ts";

// ajv-formats is CommonJS: under ESM the plugin is its module.exports, which also carries itself as .default.
const addFormats = addFormatsModule.default;

const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: false });
addFormats(ajv);
for (const keyword of [
  "x-kubernetes-validations",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-int-or-string",
  "x-kubernetes-map-type",
  "x-kubernetes-preserve-unknown-fields",
]) {
  ajv.addKeyword(keyword);
}

const compiled = new WeakMap<TSchema, ReturnType<typeof ajv.compile>>();

function describe(e: ErrorObject, root: string): string {
  const path = `${root}${e.instancePath.replaceAll("/", ".")}`;
  if (e.keyword === "required") return `${path}.${e.params.missingProperty}: Required value`;
  if (e.keyword === "pattern" && e.params.pattern === POSITIVE_QUANTITY_PATTERN) {
    return `${path}: must be a positive quantity such as 1Gi, 512Mi or integer bytes`;
  }
  if (e.keyword === "enum")
    return `${path}: must be one of ${(e.params.allowedValues as string[]).join(", ")}`;
  return `${path}: ${e.message}`;
}

/** Problems with SPEC under KIND's schema, each naming its field ("spec.cpu.cores: …"); [] when valid. */
export function validateSpec(kind: KindDefinition, spec: unknown): string[] {
  let validate = compiled.get(kind.spec);
  if (!validate) {
    validate = ajv.compile(kind.spec);
    compiled.set(kind.spec, validate);
  }
  if (validate(spec)) return [];
  // An int-or-string union reports each branch; keep one line per field and reason.
  return [
    ...new Set((validate.errors ?? []).filter((e) => e.keyword !== "anyOf").map((e) => describe(e, "spec"))),
  ];
}
