// The operator's processes for end-to-end tests: started against the test stack and stopped
// (or killed, to test recovery) by the tests themselves.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { API_VERSION } from "../../src/api/names.ts";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import { startLibvirt } from "../../src/cmd/local/libvirt.ts";
import { startOperator } from "../../src/cmd/local/operator.ts";
import { runningPid, stopDaemon } from "../../src/cmd/local/processes.ts";
import { CACHE_DIR, cachedBinary, run } from "../../src/cmd/local/tools.ts";
import { within } from "./faults.ts";
import { KUBECONFIG, kubectl, TEST_STACK, toYaml } from "./stack.ts";

/** The test stack's media directory for host paths (ISOs), apart from its state and pools. */
export const TEST_MEDIA_DIR = `${TEST_STACK.stateDir}-media`;

/** A file in the media directory QEMU cannot boot: a VM naming it as its kernel fails to start. */
export function unbootableKernel(): string {
  const path = join(TEST_MEDIA_DIR, "unbootable-vmlinuz");
  mkdirSync(TEST_MEDIA_DIR, { recursive: true });
  writeFileSync(path, "not a kernel\n");
  return path;
}

export async function startTestOperator(): Promise<void> {
  // Statistics every 2 s so tests see them without waiting a minute.
  process.env.STATISTICS_INTERVAL_SECONDS ??= "2";
  // Host paths VMs may name: the test guest's kernel and initrd, and the tests' ISOs.
  process.env.MEDIA_DIRS ??= `${join(CACHE_DIR, "guest")}:${TEST_MEDIA_DIR}`;
  mkdirSync(TEST_MEDIA_DIR, { recursive: true });
  // Tests serve images from loopback, which agents refuse by default (import-security.test.ts).
  process.env.IMAGE_IMPORT_ALLOWED_NETWORKS ??= "127.0.0.0/8,::1/128";
  await startOperator(TEST_STACK.stateDir, KUBECONFIG, TEST_STACK.nodeName, TEST_STACK.ports);
}

/**
 * libvirt 9.0's libvirtd can crash when a client is killed in the middle of its calls (seen
 * once in CI: "could not find event callback … for deletion", then a segfault freeing the dead
 * client's event callbacks). On a node systemd starts it again (Restart=on-failure) and the
 * guests, their own processes, run on; tests that kill the agent do the same, and say so.
 */
export async function restartLibvirtdIfCrashed(): Promise<void> {
  const { started } = await startLibvirt(TEST_STACK.stateDir);
  if (started)
    process.stderr.write("# libvirtd had crashed (a libvirt 9.0 bug on a killed client): started again\n");
}

export async function stopTestOperator(): Promise<void> {
  await stopDaemon(TEST_STACK.stateDir, "agent");
  await stopDaemon(TEST_STACK.stateDir, "controller");
}

export function agentPid(): number | undefined {
  return runningPid(TEST_STACK.stateDir, "agent");
}

/** Server-side applies one of our objects (field manager "e2e"). */
export async function applyObject(
  kind: string,
  namespace: string,
  name: string,
  spec: Record<string, unknown>,
  metadata: Record<string, unknown> = {},
) {
  const obj = { apiVersion: API_VERSION, kind, metadata: { name, namespace, ...metadata }, spec };
  const as = tenants.get(namespace);
  await kubectl(
    ["apply", "--server-side", "--field-manager=e2e", ...(as ? ["--as", as] : []), "-f", "-"],
    toYaml(obj),
  );
}

/** Namespaces whose objects the tests apply as the namespace's tenant, and that tenant's user. */
const tenants = new Map<string, string>();

/**
 * From now on, objects applied in NAMESPACE (applyObject, applyVm) are applied as its tenant: a
 * ServiceAccount bound to the built-in edit role, impersonated, so the API server judges them
 * with exactly the rights the chart gives tenants (attacks are tried as a tenant would).
 */
export async function actAsTenant(namespace: string): Promise<void> {
  const user = `system:serviceaccount:${namespace}:tenant`;
  const apply = (args: string[]) =>
    kubectl([...args, "--dry-run=client", "-o", "yaml"]).then(({ stdout }) =>
      kubectl(["apply", "--server-side", "-f", "-"], stdout),
    );
  await apply(["create", "serviceaccount", "tenant", "-n", namespace]);
  await apply([
    "create",
    "rolebinding",
    "tenant-edit",
    "--clusterrole=edit",
    `--serviceaccount=${namespace}:tenant`,
    "-n",
    namespace,
  ]);
  // The chart's tenant roles join edit by aggregation, a moment after they are applied.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { stdout } = await kubectl([
      "auth",
      "can-i",
      "create",
      "virtualmachines.vm.libvirt-operator.io",
      "-n",
      namespace,
      "--as",
      user,
    ]).catch(() => ({ stdout: "no" }));
    if (stdout.trim() === "yes") break;
    if (Date.now() > deadline) throw new Error(`${user} never got the tenant roles through edit`);
    await sleep(250);
  }
  tenants.set(namespace, user);
}

export async function applyVm(
  namespace: string,
  name: string,
  spec: Record<string, unknown>,
  annotations?: Record<string, string>,
) {
  await applyObject("VirtualMachine", namespace, name, spec, annotations ? { annotations } : {});
}

export async function getObject<T>(
  resource: string,
  namespace: string,
  name: string,
): Promise<T | undefined> {
  try {
    const { stdout } = await kubectl(["get", resource, name, "-n", namespace, "-o", "json"]);
    return JSON.parse(stdout) as T;
  } catch {
    return undefined;
  }
}

export function getVm(namespace: string, name: string): Promise<VirtualMachine | undefined> {
  return getObject<VirtualMachine>("virtualmachine", namespace, name);
}

/** Polls the object until CHECK passes; the error shows the last status seen. */
export async function waitForObject<T extends { status?: unknown }>(
  resource: string,
  namespace: string,
  name: string,
  check: (obj: T | undefined) => boolean,
  what: string,
  timeoutMs = 90_000,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await getObject<T>(resource, namespace, name);
    if (check(last)) return last;
    await sleep(250);
  }
  throw new Error(
    `${resource} ${namespace}/${name} never became ${what}; last status: ${JSON.stringify(last?.status, null, 1)}`,
  );
}

export function waitForVm(
  namespace: string,
  name: string,
  check: (vm: VirtualMachine | undefined) => boolean,
  what: string,
  timeoutMs = 90_000,
): Promise<VirtualMachine | undefined> {
  return waitForObject("virtualmachine", namespace, name, check, what, timeoutMs);
}

export const isPrintable = (s: string) => (vm: VirtualMachine | undefined) =>
  vm?.status?.printableStatus === s;

export function readyCondition(vm: VirtualMachine | undefined) {
  return vm?.status?.conditions?.find((c) => c.type === "Ready");
}

export function consoleLogOf(namespace: string, name: string): string {
  return `/var/log/libvirt/qemu/${namespace}_${name}-console.log`;
}

/** PID of the QEMU process of a running domain (libvirt's pid file). */
export function qemuPid(domainName: string): number | undefined {
  try {
    return Number(readFileSync(`/var/run/libvirt/qemu/${domainName}.pid`, "utf8").trim());
  } catch {
    return undefined;
  }
}

export async function virsh(...args: string[]): Promise<string> {
  return (await run("virsh", ["-c", "qemu:///system", ...args])).stdout;
}

/** The node agent's Prometheus text. */
export async function agentMetrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${TEST_STACK.ports.agentMetrics}/metrics`)).text();
}

export interface EventSeen {
  reason: string;
  type: string;
  message: string;
  count: number;
}

/** Events recorded on one object (kubectl describe's list), with their counts. */
export async function eventsOf(namespace: string, name: string): Promise<EventSeen[]> {
  const { stdout } = await kubectl([
    "get",
    "events",
    "-n",
    namespace,
    "--field-selector",
    `involvedObject.name=${name}`,
    "-o",
    "json",
  ]);
  return (JSON.parse(stdout).items as Array<Record<string, unknown>>).map((e) => ({
    reason: String(e.reason),
    type: String(e.type),
    message: String(e.message),
    count: Number(e.count ?? 1),
  }));
}

/**
 * Waits until an Event of object NAME passes MATCH (30 s by default). Events are sent beside the
 * status writes that report the same thing, not ordered with them: a test that saw the status
 * polls for the Event. The error lists the Events seen.
 */
export async function waitForEvent(
  namespace: string,
  name: string,
  match: (e: EventSeen) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<EventSeen> {
  const deadline = Date.now() + timeoutMs;
  let seen: EventSeen[] = [];
  while (Date.now() < deadline) {
    seen = await eventsOf(namespace, name);
    const found = seen.find(match);
    if (found) return found;
    await sleep(250);
  }
  throw new Error(
    `no ${what} Event on ${namespace}/${name} within ${timeoutMs / 1000}s; seen: ${JSON.stringify(seen.map((e) => `${e.type} ${e.reason}: ${e.message}`))}`,
  );
}

/** Sets annotation NAME of a VM to the current time (what `kubectl annotate … --overwrite` does). */
export async function requestNow(namespace: string, vm: string, annotation: string): Promise<string> {
  const value = new Date().toISOString();
  await kubectl(["annotate", "vm", vm, "-n", namespace, "--overwrite", `${annotation}=${value}`]);
  return value;
}

/** One version of a VM as a watch saw it: where its status says it is, and how it stands. */
export interface VmVersionSeen {
  resourceVersion: string;
  nodeName: string;
  printableStatus: string;
  ready: string;
  stalled: string;
  stalledReason: string;
}

/**
 * Records every version of VM NAME from now on (kubectl's watch, as the user), for tests that
 * judge what a watcher saw on the way, not only where it ended. until() waits for the watch
 * itself to see a version (so nothing it judges is still in the pipe); stop() ends it, and fails
 * when the watch had ended on its own (what it did not see could not be judged).
 */
export function watchVmVersions(namespace: string, name: string) {
  const seen: VmVersionSeen[] = [];
  const field = (path: string) => `{${path}}{"|"}`;
  const template = [
    field(".metadata.resourceVersion"),
    field(".status.nodeName"),
    field(".status.printableStatus"),
    field('.status.conditions[?(@.type=="Ready")].status'),
    field('.status.conditions[?(@.type=="Stalled")].status'),
    '{.status.conditions[?(@.type=="Stalled")].reason}{"\\n"}',
  ].join("");
  const child = spawn(
    cachedBinary("kubectl"),
    ["--kubeconfig", KUBECONFIG, "get", "vm", name, "-n", namespace, "-w", "-o", `jsonpath=${template}`],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let ended: string | undefined;
  let stderr = "";
  let stopping = false;
  child.on("error", (err) => (ended = `kubectl did not run: ${err.message}`));
  child.on("exit", (code, signal) => {
    if (!stopping) ended = `the watch ended (${signal ?? code}): ${stderr.slice(0, 500)}`;
  });
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  let partial = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      const [
        resourceVersion = "",
        nodeName = "",
        printableStatus = "",
        ready = "",
        stalled = "",
        stalledReason = "",
      ] = line.split("|");
      if (resourceVersion)
        seen.push({ resourceVersion, nodeName, printableStatus, ready, stalled, stalledReason });
    }
  });
  const stop = () => {
    stopping = true;
    child.kill();
    if (ended) throw new Error(`watch of vm ${namespace}/${name}: ${ended}`);
  };
  return {
    seen,
    /** Waits until the watch has seen a version that MATCH accepts. */
    async until(match: (v: VmVersionSeen) => boolean, what: string, timeoutMs = 30_000) {
      const took = await within(() => ended !== undefined || seen.some(match), timeoutMs);
      if (ended) throw new Error(`watch of vm ${namespace}/${name}: ${ended}`);
      if (took === undefined)
        throw new Error(`the watch of vm ${namespace}/${name} never saw ${what}: ${JSON.stringify(seen)}`);
    },
    stop,
  };
}
