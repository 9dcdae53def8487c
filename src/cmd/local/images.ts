// The operator's OCI image, built without Docker by scripts/image/operator-image.sh from this
// checkout or another (an earlier release), named as the chart of that checkout expects it.
import { spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./tools.ts";

/** The chart's default image repository (values.yaml image.repository). */
export const IMAGE_REPOSITORY = "ghcr.io/libvirt-operator/libvirt-operator";

export interface OperatorImage {
  /** The OCI layout tarball (`ctr images import` takes it). */
  tar: string;
  /** repository:appVersion of the checkout's chart: its default image. */
  reference: string;
  bytes: number;
}

export function chartAppVersion(checkout: string): string {
  const chart = readFileSync(join(checkout, "helm", "libvirt-operator", "Chart.yaml"), "utf8");
  const version = /^appVersion: *"?([^"\n]+)"?$/m.exec(chart)?.[1];
  if (!version) throw new Error(`no appVersion in ${checkout}'s Chart.yaml`);
  return version;
}

/** Builds (or finds cached) the image of CHECKOUT; the script's progress goes to stderr. */
export async function buildOperatorImage(checkout = REPO_ROOT): Promise<OperatorImage> {
  const script = join(REPO_ROOT, "scripts", "image", "operator-image.sh");
  const child = spawn("bash", [script, checkout], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  if (code !== 0) throw new Error(`${script} ${checkout} failed (exit ${code})`);
  const tar = out.trim().split("\n").at(-1) ?? "";
  return { tar, reference: `${IMAGE_REPOSITORY}:${chartAppVersion(checkout)}`, bytes: statSync(tar).size };
}
