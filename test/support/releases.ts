// The operator's images and charts as users get them: this checkout's, and the previous release's
// (the commit issue 15 started from: chart 0.1.0, whose agent ran as uid 65532 in the release's
// own namespace), built here without Docker and imported into the test stack's node.
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buildOperatorImage, chartAppVersion, type OperatorImage } from "../../src/cmd/local/images.ts";
import { importImage } from "../../src/cmd/local/node.ts";
import { CACHE_DIR, REPO_ROOT, run } from "../../src/cmd/local/tools.ts";
import { TEST_STACK } from "./stack.ts";

/** main before the real node and the chart's namespace split: the release users upgrade from. */
export const PREVIOUS_RELEASE = {
  commit: "8761e892429e91858431719952277f2356d6d7c1",
  version: "0.1.0",
};

export interface Release {
  /** The checkout the chart and image come from. */
  dir: string;
  chart: string;
  version: string;
  image: OperatorImage;
}

/** The previous release's files (git archive of its commit), extracted once into the cache. */
async function previousSources(): Promise<string> {
  const dir = join(CACHE_DIR, "releases", PREVIOUS_RELEASE.commit.slice(0, 12));
  if (existsSync(join(dir, ".complete"))) return dir;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const paths = ["src", "crds", "helm", "package.json", "package-lock.json"];
  const tar = `${dir}.tar`;
  await run("git", ["-C", REPO_ROOT, "archive", "-o", tar, PREVIOUS_RELEASE.commit, ...paths]);
  await run("tar", ["-xf", tar, "-C", dir]);
  await rm(tar);
  await writeFile(join(dir, ".complete"), `${PREVIOUS_RELEASE.commit}\n`);
  return dir;
}

async function built(dir: string): Promise<Release> {
  const image = await buildOperatorImage(dir);
  await importImage(TEST_STACK.stateDir, image.tar, image.reference);
  return { dir, chart: join(dir, "helm", "libvirt-operator"), version: chartAppVersion(dir), image };
}

/** This checkout's chart and image (`make image`), in the test stack's containerd. */
export function currentRelease(): Promise<Release> {
  return built(REPO_ROOT);
}

/** The previous release's chart and image, in the test stack's containerd. */
export async function previousRelease(): Promise<Release> {
  return built(await previousSources());
}
