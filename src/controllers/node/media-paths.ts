// Host paths a VM names (spec.cdrom.image, spec.boot.kernel, spec.boot.initrd) are for admins:
// the agent accepts a regular file inside a media directory its admin configured (MEDIA_DIRS),
// after following symlinks and "..", and never one inside a storage pool, an image import
// directory or the agent's own state. The resolved path is what the domain gets, so nothing
// can change between the check and libvirt opening the file through another name.
import { realpath, stat } from "node:fs/promises";
import { posix } from "node:path";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { Reason } from "../event-reasons.ts";
import type { Refusal } from "../tenant-policy.ts";

/** The fields that name host files, as users write them. */
export const HOST_PATH_FIELDS = ["spec.cdrom.image", "spec.boot.kernel", "spec.boot.initrd"] as const;
export type HostPathField = (typeof HOST_PATH_FIELDS)[number];

/** Host files a VM uses, resolved and checked: what goes into its domain. */
export interface HostMedia {
  cdromImage?: string;
  kernel?: string;
  initrd?: string;
}

/** Directories a host path must never reach, with what they are (for the message). */
export interface ForbiddenArea {
  dir: string;
  what: string;
}

/** What the rules are judged against, every directory already resolved (realpath). */
export interface MediaRules {
  nodeName: string;
  /** Admin-configured media directories, as configured and as resolved. */
  mediaDirs: readonly string[];
  forbidden: readonly ForbiddenArea[];
}

/** Configuration of the agent (MEDIA_DIRS etc.) and where it looks on its node. */
export interface MediaEnvironment {
  nodeName: string;
  mediaDirs: readonly string[];
  importDirs: readonly string[];
  /** The agent's own files: console logs, credentials, libvirt's sockets and state. */
  agentStateDirs: readonly string[];
  /** Target directories of every storage pool libvirt has on the node (asked each time). */
  poolDirs(): Promise<Array<{ pool: string; dir: string }>>;
}

/** MEDIA_DIRS: ":"-separated absolute directories; default none (no host paths at all). */
export function mediaDirsFromEnv(value: string | undefined): string[] {
  return (value ?? "")
    .split(":")
    .map((d) => d.trim())
    .filter((d) => d.startsWith("/"))
    .map((d) => posix.normalize(d));
}

/**
 * The agent's own files a host path must never reach: its console logs, its credentials (the
 * pod's service account, a kubeconfig's directory), libvirt's sockets and domain state.
 */
/** Where the agent keeps the memory images of snapshots that copy volumes (SNAPSHOT_MEMORY_DIR). */
export function snapshotMemoryDirOf(env: NodeJS.ProcessEnv): string {
  const dir = env.SNAPSHOT_MEMORY_DIR;
  return dir?.startsWith("/") ? dir : "/var/lib/libvirt/libvirt-operator-snapshots";
}

export function agentStateDirsOf(env: NodeJS.ProcessEnv, consoleLogDir: string): string[] {
  // Also the host's own secrets and kernel interfaces, whatever media directory an admin names.
  const dirs = [
    consoleLogDir,
    "/var/run/libvirt",
    "/run/libvirt",
    "/var/lib/libvirt/qemu",
    "/var/run/secrets",
    "/run/secrets",
    "/var/lib/kubelet",
    "/etc/kubernetes",
    "/proc",
    "/sys",
    "/dev",
  ];
  if (env.KUBECONFIG?.startsWith("/")) dirs.push(posix.dirname(env.KUBECONFIG));
  dirs.push(snapshotMemoryDirOf(env));
  return dirs;
}

const REFUSED = Reason.HostPathRefused;

/** DIR itself or anything below it. */
export function isWithin(path: string, dir: string): boolean {
  if (dir === "/") return path.startsWith("/");
  const d = dir.endsWith("/") ? dir.slice(0, -1) : dir;
  return path === d || path.startsWith(`${d}/`);
}

/** The host paths of VM, field by field (an empty CD-ROM image is an empty drive, no path). */
export function hostPathsOf(vm: VirtualMachine): Array<{ field: HostPathField; path: string }> {
  const out: Array<{ field: HostPathField; path: string }> = [];
  if (vm.spec.cdrom?.image) out.push({ field: "spec.cdrom.image", path: vm.spec.cdrom.image });
  if (vm.spec.boot?.kernel) out.push({ field: "spec.boot.kernel", path: vm.spec.boot.kernel });
  if (vm.spec.boot?.initrd) out.push({ field: "spec.boot.initrd", path: vm.spec.boot.initrd });
  return out;
}

function refusal(field: HostPathField, message: string): Refusal {
  return { field, reason: REFUSED, message: `${field}: ${message}` };
}

function describeDirs(rules: MediaRules): string {
  return rules.mediaDirs.length ? `(${rules.mediaDirs.join(", ")})` : "(none are configured)";
}

/**
 * Judged on the text alone, before the file system is touched (so no tenant learns whether a
 * file outside the media directories exists): absolute, no NUL, no ".." segment, and inside a
 * media directory as written.
 */
export function judgeRequested(field: HostPathField, path: string, rules: MediaRules): Refusal | undefined {
  if (!path.startsWith("/")) return refusal(field, `"${path}" is not an absolute path`);
  if (path.includes("\0")) return refusal(field, "the path contains a NUL character");
  if (path.split("/").includes(".."))
    return refusal(
      field,
      "the path contains a '..' segment; name the file inside a media directory directly",
    );
  if (!rules.mediaDirs.some((d) => isWithin(posix.normalize(path), d)))
    return refusal(
      field,
      `${path} is not inside a media directory of node ${rules.nodeName} ${describeDirs(rules)}; host ` +
        "paths are for media the node's admin provides (agent.mediaDirs), tenants attach media as VMDisks " +
        "(spec.cdrom.diskRef)",
    );
  return undefined;
}

/** Judged on the path the file system resolved (symlinks and ".." followed): the one used. */
export function judgeResolved(
  field: HostPathField,
  requested: string,
  resolved: string,
  rules: MediaRules,
): Refusal | undefined {
  const via = resolved === requested ? "" : " (after following symlinks)";
  const area = rules.forbidden.find((a) => isWithin(resolved, a.dir));
  if (area)
    return refusal(
      field,
      `${requested} lies inside ${area.what}${via}; such files are never handed to a VM by path ` +
        "(a volume is attached as a VMDisk)",
    );
  if (!rules.mediaDirs.some((d) => isWithin(resolved, d)))
    return refusal(
      field,
      `${requested} resolves${via} to a file outside the media directories of node ${rules.nodeName} ` +
        describeDirs(rules),
    );
  return undefined;
}

/** A directory as the file system resolves it; as written when it does not exist (yet). */
async function resolvedDir(dir: string): Promise<string> {
  return realpath(dir).catch(() => posix.normalize(dir));
}

/** The rules as they stand on the node now: every directory resolved, pools asked from libvirt. */
export async function currentRules(env: MediaEnvironment): Promise<MediaRules> {
  // Every lookup at once (they only read): this runs before each start of a VM with host media.
  const [media, forbidden] = await Promise.all([
    Promise.all(env.mediaDirs.map(async (d) => [posix.normalize(d), await resolvedDir(d)])),
    env.poolDirs().then((pools) =>
      Promise.all(
        [
          ...pools.map((p) => ({ dir: p.dir, what: `storage pool ${p.pool}` })),
          ...env.importDirs.map((dir) => ({ dir, what: "an image import directory" })),
          ...env.agentStateDirs.map((dir) => ({ dir, what: "the agent's state" })),
        ].map(async ({ dir, what }) => [
          { dir: posix.normalize(dir), what },
          { dir: await resolvedDir(dir), what },
        ]),
      ),
    ),
  ]);
  return { nodeName: env.nodeName, mediaDirs: [...new Set(media.flat())], forbidden: forbidden.flat() };
}

/**
 * The VM's host paths resolved and judged, or the first refusal. Only paths that already lie in
 * a media directory as written are looked up on the file system.
 */
export async function resolveHostMedia(
  vm: VirtualMachine,
  env: MediaEnvironment,
): Promise<{ media: HostMedia } | { refused: Refusal }> {
  const paths = hostPathsOf(vm);
  const media: HostMedia = {};
  if (!paths.length) return { media };
  const rules = await currentRules(env);
  for (const { field, path } of paths) {
    const early = judgeRequested(field, path, rules);
    if (early) return { refused: early };
    const resolved = await realpath(path).catch(() => undefined);
    if (!resolved)
      return {
        refused: refusal(field, `${path} does not exist on node ${env.nodeName} (or cannot be read)`),
      };
    const late = judgeResolved(field, path, resolved, rules);
    if (late) return { refused: late };
    const isFile = await stat(resolved).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!isFile) return { refused: refusal(field, `${path} is not a regular file`) };
    if (field === "spec.cdrom.image") media.cdromImage = resolved;
    else if (field === "spec.boot.kernel") media.kernel = resolved;
    else media.initrd = resolved;
  }
  return { media };
}
