// Pure: what happens to the VMs and VMDisks of a node whose agent went quiet. A node is LOST
// when no heartbeat was seen for the limit: its objects say Unknown (condition NodeLost) and
// nothing else is done — the guest may still run there. It is GONE only when an admin confirms
// it (the Node is deleted, or tainted node.kubernetes.io/out-of-service as in Kubernetes'
// non-graceful node shutdown) while it is lost: then finalizers are released and VMs that can
// run elsewhere (no node-local disks) and whose runStrategy keeps them running are placed again.
// Without that confirmation a VM is never started a second time.
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import { type Condition, findCondition, type Standing, standingConditions } from "../conditions.ts";

export const NODE_LOST_CONDITION = "NodeLost";
export const DEFAULT_NODE_LOST_AFTER_MS = 60_000;

export type NodeHealth = "alive" | "lost" | "gone";

export interface NodeFacts {
  name: string;
  /** The Node object exists. */
  exists: boolean;
  /** Tainted node.kubernetes.io/out-of-service (the admin says it is shut down). */
  outOfService: boolean;
  /** How long this controller has seen no heartbeat from its agent (ms). */
  silentMs: number;
  /**
   * This controller saw the agent renew. A controller just started (or a new leader) has not:
   * the node is not judged lost yet, but a NodeLost already written is not taken back either.
   */
  heardRenewing: boolean;
}

/** The node's health, and when to look again if nothing else happens. */
export function judgeNode(node: NodeFacts, lostAfterMs: number): { health: NodeHealth; recheckInMs: number } {
  if (node.silentMs < lostAfterMs) return { health: "alive", recheckInMs: lostAfterMs - node.silentMs + 250 };
  const confirmed = !node.exists || node.outOfService;
  // Lost nodes are looked at now and then anyway (a missed taint event costs a minute at most).
  return { health: confirmed ? "gone" : "lost", recheckInMs: 60_000 };
}

export type LossAction =
  /** Nothing to write. */
  | { act: "none" }
  /** Say the node is lost: status Unknown, NodeLost=True (and an Event when it is news). */
  | { act: "mark"; fields: Record<string, unknown>; conditions: Wanted; news: boolean; message: string }
  /** The node answers again: NodeLost=False; its agent writes the rest. */
  | { act: "clear"; fields: Record<string, unknown>; conditions: Wanted; message: string }
  /** Deleted while its node is gone: the controller lets the object go. */
  | { act: "release"; finalizer: string; message: string }
  /** Its node is gone and it can run elsewhere: forget the placement, the VM is placed again. */
  | { act: "replace"; message: string };

type Conditions = readonly Condition[] | undefined;
export type Wanted = Array<Omit<Condition, "lastTransitionTime" | "observedGeneration">>;

function lostConditions(reason: string, message: string, standing: Standing["state"]): Wanted {
  return [
    { type: NODE_LOST_CONDITION, status: "True", reason, message },
    ...standingConditions({ state: standing, reason, message }),
  ];
}

/** NodeLost=True with REASON and MESSAGE already there: nothing to say again. */
function alreadySaid(conditions: Conditions, reason: string, message: string): boolean {
  const c = findCondition(conditions, NODE_LOST_CONDITION);
  return c?.status === "True" && c.reason === reason && c.message === message;
}

/** NodeLost=False for a VM placed again, and its standing: waiting for the new node's report. */
export function placedAgainConditions(message: string): Wanted {
  return [
    { type: NODE_LOST_CONDITION, status: "False", reason: "PlacedAgain", message },
    ...standingConditions({ state: "reconciling", reason: "PlacedAgain", message }),
  ];
}

/**
 * NodeLost=False once the agent was seen renewing. Only the condition: the Unknown state is
 * another writer's (NODE_LOSS_STATE), left for the agent's next report to take over, so a report
 * that came first is never overwritten.
 */
function clearAction(conditions: Conditions, node: NodeFacts): LossAction {
  if (findCondition(conditions, NODE_LOST_CONDITION)?.status !== "True" || !node.heardRenewing)
    return { act: "none" };
  const message = `the agent of node ${node.name} is heard from again`;
  return {
    act: "clear",
    message,
    fields: {},
    conditions: [{ type: NODE_LOST_CONDITION, status: "False", reason: "NodeReachable", message }],
  };
}

const seconds = (ms: number) => `${Math.round(ms / 1000)}s`;

/**
 * What to do with VM, placed on NODE (judged HEALTH), given whether each of its disks lives in
 * a shared pool (false for a node-local or unknown disk).
 */
export function vmLossAction(
  vm: VirtualMachine & { metadata?: { deletionTimestamp?: unknown; finalizers?: string[] } },
  node: NodeFacts,
  health: NodeHealth,
  diskShared: readonly boolean[],
  finalizer: string,
): LossAction {
  const conditions = vm.status?.conditions as Conditions;
  if (health === "alive") return clearAction(conditions, node);
  if (health === "gone") {
    if (vm.metadata?.deletionTimestamp) {
      if (!vm.metadata.finalizers?.includes(finalizer)) return { act: "none" };
      return {
        act: "release",
        finalizer,
        message: `node ${node.name} is gone; the VM's domain went with it`,
      };
    }
    const strategy = vm.spec.runStrategy ?? "Always";
    const keepsRunning = strategy === "Always" || strategy === "RerunOnFailure";
    // Pinned to the gone node (spec.nodeName), it could only be refused elsewhere.
    const movable = diskShared.every((shared) => shared) && !vm.spec.nodeName;
    if (keepsRunning && movable)
      return { act: "replace", message: `node ${node.name} is gone; runStrategy ${strategy}: placed again` };
    const why = vm.spec.nodeName
      ? "spec.nodeName pins the VM to it: delete the VM, or bring the node back"
      : !movable
        ? "its VMDisks are on that node's local storage: delete the VM, or bring the node back"
        : `runStrategy ${strategy} does not start it elsewhere: delete it, or set runStrategy Always to run it on another node`;
    const message = `node ${node.name} is gone (${gone(node)}); ${why}`;
    return markAction(vm.status?.conditions as Conditions, "NodeGone", message, "stalled", {
      printableStatus: "Unknown",
    });
  }
  const message = `no heartbeat from the agent of node ${node.name} for ${seconds(node.silentMs)}; the VM's state is unknown (it may still run there). If the node is shut down, taint it node.kubernetes.io/out-of-service or delete the Node`;
  return markAction(conditions, "NodeLost", message, "reconciling", { printableStatus: "Unknown" });
}

/**
 * What to do with DISK, placed on NODE (judged HEALTH). A disk in a shared pool is not lost with
 * its node (every node reaches its volume, and VMs placed again use it): it is left as it is,
 * and when deleted while its node is gone it is let go with its volume left in the pool (no
 * node is asked to delete it yet: the Event names it).
 */
export function diskLossAction(
  disk: VMDisk & { metadata?: { deletionTimestamp?: unknown; finalizers?: string[] } },
  node: NodeFacts,
  health: NodeHealth,
  finalizer: string,
): LossAction {
  const conditions = disk.status?.conditions as Conditions;
  const shared = disk.status?.storagePoolShared === true;
  if (health === "alive" || (shared && !disk.metadata?.deletionTimestamp))
    return clearAction(conditions, node);
  if (health === "gone") {
    if (disk.metadata?.deletionTimestamp) {
      if (!disk.metadata.finalizers?.includes(finalizer)) return { act: "none" };
      const message = shared
        ? `node ${node.name} is gone; its volume ${disk.status?.path ?? ""} is left in shared storage pool ${disk.status?.pool ?? ""} (delete it there)`
        : `node ${node.name} is gone; its volume went with the node's local storage`;
      return { act: "release", finalizer, message };
    }
    const message = `node ${node.name} is gone (${gone(node)}); its volume was on that node's local storage and is lost unless the node comes back`;
    return markAction(conditions, "NodeGone", message, "stalled", { phase: "Unknown" });
  }
  const message = `no heartbeat from the agent of node ${node.name} for ${seconds(node.silentMs)}; the volume's state is unknown`;
  return markAction(conditions, "NodeLost", message, "reconciling", { phase: "Unknown" });
}

/**
 * What to do with a VMSnapshot its node agent took on NODE (judged HEALTH): only a deleted one
 * of a gone node needs anything — nobody is left to remove what it stored, so it is let go.
 */
export function snapshotLossAction(
  snapshot: { metadata?: { deletionTimestamp?: unknown; finalizers?: string[] } },
  node: NodeFacts,
  health: NodeHealth,
  finalizer: string,
): LossAction {
  if (health !== "gone" || !snapshot.metadata?.deletionTimestamp) return { act: "none" };
  if (!snapshot.metadata.finalizers?.includes(finalizer)) return { act: "none" };
  return {
    act: "release",
    finalizer,
    message: `node ${node.name} is gone (${gone(node)}); the snapshot is let go without its node agent: what it stored on the node (local storage) is lost with the node, or left there unowned if the node comes back; what it stored in a shared storage pool stays there`,
  };
}

function gone(node: NodeFacts): string {
  return node.exists ? "tainted node.kubernetes.io/out-of-service" : "its Node was deleted";
}

/**
 * NodeLost=True with REASON. The message of a lost node counts the silence in seconds; it is
 * written when the reason changes, not every second (a minute's steps would be writes too).
 */
function markAction(
  conditions: Conditions,
  reason: string,
  message: string,
  standing: Standing["state"],
  fields: Record<string, unknown>,
): LossAction {
  const current = findCondition(conditions, NODE_LOST_CONDITION);
  const sameReason = current?.status === "True" && current.reason === reason;
  if (alreadySaid(conditions, reason, message) || (reason === "NodeLost" && sameReason))
    return { act: "none" };
  return {
    act: "mark",
    news: !sameReason,
    message,
    fields,
    conditions: lostConditions(reason, message, standing),
  };
}
