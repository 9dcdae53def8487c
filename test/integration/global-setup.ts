// Starts the test stack (real etcd + kube-apiserver, CRDs installed) before any test file
// runs, from a clean store, and stops exactly what it started afterwards.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { stackDown, stackUp } from "../../src/cmd/local/stack.ts";
import { recordTestCluster, sweepTestLeftovers } from "../support/leftovers.ts";
import { TEST_STACK } from "../support/stack.ts";

export async function globalSetup() {
  await stackDown(TEST_STACK);
  await rm(join(TEST_STACK.stateDir, "etcd"), { recursive: true, force: true });
  await stackUp(TEST_STACK);
  // Before any agent starts: what runs cut short left in libvirt would conflict with names reused.
  const say = (line: string) => process.stderr.write(`==> ${line}\n`);
  await sweepTestLeftovers(say).catch((err) => say(`sweeping what earlier test runs left failed: ${err}`));
  await recordTestCluster(TEST_STACK.stateDir).catch((err) =>
    say(`recording this run's cluster failed: ${err}`),
  );
}

export async function globalTeardown() {
  await stackDown(TEST_STACK);
}
