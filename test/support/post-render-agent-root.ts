#!/usr/bin/env node
// helm --post-renderer for the previous release (chart 0.1.0) only. That chart ran its agent as
// the image's uid 65532, which libvirtd refuses (no polkit agent for it), so none of its agents
// ever connected; users who ran it patched the DaemonSet to run as root, as this does, and the
// upgrade test starts from such a working install (guests running) like theirs.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";

interface Manifest {
  kind?: string;
  spec?: { template?: { spec?: { containers?: Array<{ securityContext?: Record<string, unknown> }> } } };
}

const docs = yaml.loadAll(readFileSync(0, "utf8")) as Array<Manifest | null>;
for (const doc of docs) {
  if (doc?.kind !== "DaemonSet") continue;
  for (const c of doc.spec?.template?.spec?.containers ?? [])
    c.securityContext = { ...c.securityContext, runAsUser: 0 };
}
process.stdout.write(
  docs
    .filter(Boolean)
    .map((d) => yaml.dump(d))
    .join("---\n"),
);
