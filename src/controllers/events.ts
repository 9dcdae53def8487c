// Recording an Event: the reason is one of EVENT_REASONS, and its type (Normal or Warning) is the
// one listed there, so a reason never changes type between call sites.
import { type AnyObject, type Kube, recordEvent } from "../runtime/kube.ts";
import { EVENT_REASONS, type EventReason } from "./event-reasons.ts";

/** Records an Event on OBJ (never throws; repeats within minutes raise one Event's count). */
export type EventRecorder = (obj: object, reason: EventReason, message: string) => Promise<void>;

export function eventRecorder(kube: Kube, component: string): EventRecorder {
  return (obj, reason, message) =>
    recordEvent(kube, component, obj as AnyObject, EVENT_REASONS[reason].type, reason, message);
}
