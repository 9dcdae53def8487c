// What the generator and the validators need to know about one kind.
import type { TSchema } from "@sinclair/typebox";
import type { CelRule } from "./common.ts";

export interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  jsonPath: string;
  description?: string;
  priority?: number;
}

/** How the API and kubectl name a kind: all a running process needs to read and write its objects. */
export interface KindName {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
}

/** A kind's name and its schema: what the CRD generator and the validators read. */
export interface KindDefinition extends KindName {
  /** What `kubectl explain <kind>` prints first. */
  description: string;
  spec: TSchema;
  status: TSchema;
  printerColumns: PrinterColumn[];
  /** Rules on the whole object (they may read metadata.name). */
  rootRules?: CelRule[];
  /** Whether spec is required (false for kinds whose spec is all optional). */
  specRequired?: boolean;
}

/** The object shape every kind shares; spec and status come from the definition. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: Array<{
    apiVersion: string;
    kind: string;
    name: string;
    uid: string;
    controller?: boolean;
  }>;
}

export interface CustomObject<Spec, Status> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: Spec;
  status?: Status;
}
