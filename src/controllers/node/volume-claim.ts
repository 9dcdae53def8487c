// Pure: whose a VMDisk's volume is, from the ownership marks next to it in its pool.
// The key of a volume is (cluster, namespace, name): the namespace and name are in the volume's
// own name (volumeNameOf), the cluster in the name of an empty mark volume beside it:
//   lvo-making-<cluster>.<volume>  made before anything is written (the volume may be partial),
//   lvo-owner-<cluster>.<volume>   made once the volume is complete (then the making mark goes).
// (Marks do not start with the volume's name: what lists a disk's volumes by it sees none.)
// The object's UID is not in the key: a restore (Velero, GitOps) gives the object a new one.
// Marks live in the pool itself, so they survive agent restarts and travel with a shared pool,
// and they are read through libvirt like the volume (nothing outside the pool is touched).
import { createHash } from "node:crypto";
import { fileNameFitting, type VolumeFormat } from "../../hypervisor/storage/volume.ts";

export type MarkState = "making" | "owner";

/** The cluster identity as it may appear in a file name. */
function clusterTag(clusterId: string): string {
  return /^[a-z0-9-]{1,64}$/.test(clusterId)
    ? clusterId
    : createHash("sha256").update(clusterId).digest("hex").slice(0, 32);
}

/** Name of VOLUME's mark of STATE for CLUSTER. */
export function markNameOf(volume: string, clusterId: string, state: MarkState): string {
  return fileNameFitting(`${markPrefix(clusterId, state)}${volume}`, "");
}

function markPrefix(clusterId: string, state: MarkState): string {
  return `lvo-${state}-${clusterTag(clusterId)}.`;
}

/** The VMDisk a volume name belongs to ("<namespace>_<name>.qcow2|img"), if it is one of ours. */
export function diskOfVolumeName(
  volume: string,
): { namespace: string; name: string; format: VolumeFormat } | undefined {
  const m = /^([a-z0-9][a-z0-9.-]*)_([a-z0-9][a-z0-9.-]*)\.(qcow2|img)$/.exec(volume);
  if (!m) return undefined;
  return { namespace: m[1]!, name: m[2]!, format: m[3] === "qcow2" ? "qcow2" : "raw" };
}

/** The volume whose owner mark of CLUSTER is named MARK (undefined: not such a mark). */
export function volumeOfOwnerMark(mark: string, clusterId: string): string | undefined {
  const prefix = markPrefix(clusterId, "owner");
  if (!mark.startsWith(prefix)) return undefined;
  const volume = mark.slice(prefix.length);
  // A name shortened to fit (hashed) cannot be read back; it is never reported, only kept.
  return markNameOf(volume, clusterId, "owner") === mark ? volume : undefined;
}

export interface VolumeSeenForClaim {
  /** The disk's volume exists in its pool. */
  exists: boolean;
  /** This cluster's marks of it. */
  owner: boolean;
  making: boolean;
  /** The volume's path, and the one in the disk's status (set once the agent reported it). */
  path?: string;
  statusPath?: string;
  /** This process made or checked the volume already. */
  known: boolean;
}

export type VolumeClaim =
  /** No volume: make it (marked "making" first). */
  | { create: true }
  /** Ours, complete, and the disk knows it. */
  | { own: true }
  /** Ours and complete, but the disk has no status (restored, re-applied): take it as it is. */
  | { adopt: true }
  /** Ours, complete by the disk's own status, from before marks existed: mark it. */
  | { mark: true }
  /** Ours, never finished (an agent stopped mid-copy): its data is partial; start over. */
  | { restart: true }
  /** Not provably this cluster's disk's: never adopted, never deleted. */
  | { refuse: true };

export function decideVolumeClaim(v: VolumeSeenForClaim): VolumeClaim {
  if (!v.exists) return { create: true };
  const reported = v.statusPath !== undefined && v.statusPath === v.path;
  if (v.owner) return reported || v.known ? { own: true } : { adopt: true };
  // The disk's status names this very volume: the agent made it and said it was usable.
  if (reported || v.known) return { mark: true };
  if (v.making) return { restart: true };
  return { refuse: true };
}

/** Why a volume is refused, for the disk's status and Event (names only what the tenant owns). */
export function refusedVolumeMessage(volume: string, pool: string, node: string): string {
  return (
    `volume ${volume} exists in storage pool ${pool} on node ${node} but carries no record that this ` +
    "cluster's VMDisk of this namespace and name made it (another cluster's, made by hand, or left from " +
    "before ownership records): it is neither used nor deleted; an administrator may delete or rename it " +
    "to have the disk made afresh"
  );
}
