// Pure (reads one file): examples/argocd/argocd-cm.yaml, the argocd-cm entries that give Argo CD
// a health check for each kind. The check itself is src/argocd/health.lua, the single source;
// `make generate` writes the ConfigMap and `generate --check` fails when it drifts.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import yaml from "js-yaml";
import { KINDS } from "../api/index.ts";
import { GROUP } from "../api/names.ts";

export const HEALTH_SCRIPT = join(import.meta.dirname, "health.lua");
export const ARGOCD_CM_PATH = "examples/argocd/argocd-cm.yaml";

const HEADER =
  "# Generated from src/argocd/health.lua by `make generate`. Do not edit.\n" +
  "# Argo CD health checks for the libvirt-operator kinds: merge these keys into the argocd-cm\n" +
  '# ConfigMap of your Argo CD (see the README, "Argo CD"), e.g.\n' +
  "#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file examples/argocd/argocd-cm.yaml\n";

/** argocd-cm's key for KIND's health check. */
export function healthKey(kind: string): string {
  return `resource.customizations.health.${GROUP}_${kind}`;
}

/** The health check script, as Argo CD runs it for every kind. */
export function healthScript(): string {
  return readFileSync(HEALTH_SCRIPT, "utf8");
}

/** The generated Argo CD files, as path → content. */
export function argocdFiles(): Map<string, string> {
  const script = healthScript();
  const data = Object.fromEntries(KINDS.map((k) => [healthKey(k.kind), script]));
  const cm = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: "argocd-cm",
      namespace: "argocd",
      labels: { "app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd" },
    },
    data,
  };
  return new Map([
    [ARGOCD_CM_PATH, HEADER + yaml.dump(cm, { lineWidth: -1, noRefs: true, sortKeys: false })],
  ]);
}
