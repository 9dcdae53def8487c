// The one way our reconcilers write status: server-side apply of the fields one writer owns,
// only when applying them would change something (steady state writes nothing). Which writer
// owns which field is listed in the README ("Who writes what").
import type { KindDefinition } from "../api/kind.ts";
import { applyStatus, httpStatus, type Kube } from "../runtime/kube.ts";
import { type Condition, type Standing, standingConditions, writerConditions } from "./conditions.ts";
import { CONDITIONS_RULE, type ListMapRule, ownedStatusChanged } from "./status-diff.ts";

/** The controller's word on where an object stands until its node agent reports; yields to the agent. */
export const STANDING_FIELD_MANAGER = "libvirt-operator-controller-standing";

export interface StatusWriterOptions {
  kind: KindDefinition;
  fieldManager: string;
  /**
   * Every field this writer owns: one it leaves out of an apply is removed. Without it, the
   * fields of each apply are compared (writers whose set of fields varies by case).
   */
  owns?: readonly string[];
  /** List-map fields (conditions by type are one). */
  listMaps?: Record<string, ListMapRule>;
  /**
   * Yield to other writers: a field another manager holds with another value is left to it
   * (the write is skipped) instead of taken over.
   */
  yieldToOthers?: boolean;
}

type Writable = { metadata: { name: string; namespace?: string }; status?: unknown };
type Judged = {
  metadata: { name: string; namespace?: string; generation?: number };
  status?: { conditions?: Condition[] };
};

export class StatusWriter {
  private readonly kube: Kube;
  private readonly o: StatusWriterOptions;

  constructor(kube: Kube, options: StatusWriterOptions) {
    this.kube = kube;
    this.o = options;
  }

  /** Applies STATUS to OBJ when it differs from OBJ's status; true when it wrote. */
  async write(obj: Writable, status: Record<string, unknown>): Promise<boolean> {
    const listMaps = this.o.listMaps ?? { conditions: CONDITIONS_RULE };
    const fields = this.o.owns ?? Object.keys(status);
    if (!ownedStatusChanged(obj.status as Record<string, unknown> | undefined, status, fields, listMaps))
      return false;
    try {
      await applyStatus(this.kube, this.o.kind, obj, this.o.fieldManager, status, !this.o.yieldToOthers);
    } catch (err) {
      if (this.o.yieldToOthers && httpStatus(err) === 409) return false;
      throw err;
    }
    return true;
  }

  /** Applies FIELDS with Ready/Reconciling/Stalled saying STANDING, judged at OBJ's generation. */
  async writeStanding(obj: Judged, fields: Record<string, unknown>, standing: Standing): Promise<boolean> {
    const generation = obj.metadata.generation ?? 0;
    return this.write(obj, {
      ...fields,
      observedGeneration: generation,
      conditions: writerConditions(
        obj.status?.conditions,
        standingConditions(standing),
        generation,
        new Date(),
      ),
    });
  }
}
