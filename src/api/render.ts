// Pure: the files generated from src/api, as path → content. `make generate` writes them;
// the drift test compares them with what is committed.
import yaml from "js-yaml";
import { buildCrd } from "./crd.ts";
import { KINDS } from "./index.ts";

const HEADER = "# Generated from src/api by `make generate`. Do not edit.\n";
export const CHART_DIR = "helm/libvirt-operator";

function toYaml(obj: unknown): string {
  return yaml.dump(obj, { lineWidth: -1, noRefs: true, sortKeys: false });
}

/** Wraps a CRD for the chart: installed when crds.enabled, kept on uninstall when crds.keep. */
function chartCrd(crdYaml: string): string {
  const withMeta = crdYaml.replace(
    /^metadata:\n {2}name: (.+)\n/m,
    (_m, name: string) =>
      `metadata:\n  name: ${name}\n` +
      '  labels:\n    {{- include "libvirt-operator.labels" . | nindent 4 }}\n' +
      "  {{- if .Values.crds.keep }}\n  annotations:\n    helm.sh/resource-policy: keep\n  {{- end }}\n",
  );
  return `${HEADER}{{- if .Values.crds.enabled }}\n${withMeta}{{- end }}\n`;
}

export function generatedFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const def of KINDS) {
    const crdYaml = toYaml(buildCrd(def));
    files.set(`crds/${def.plural}.yaml`, HEADER + crdYaml);
    files.set(`${CHART_DIR}/templates/crds/${def.plural}.yaml`, chartCrd(crdYaml));
  }
  return files;
}
