{{- define "libvirt-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "libvirt-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "libvirt-operator.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "libvirt-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- /* The namespace the node agent runs in: agent.namespace, or "<release namespace>-agent". */ -}}
{{- define "libvirt-operator.agentNamespace" -}}
{{- if .Values.agent.namespace -}}
{{- .Values.agent.namespace -}}
{{- else -}}
{{- $name := printf "%s-agent" .Release.Namespace -}}
{{- if gt (len $name) 63 -}}
{{- fail (printf "the agent's namespace %s would be longer than 63 characters: set agent.namespace" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}
{{- end -}}

{{- /* The namespace of a component ("controller" or "agent"): dict "root" . "component" name. */ -}}
{{- define "libvirt-operator.namespace" -}}
{{- if eq .component "agent" -}}
{{- include "libvirt-operator.agentNamespace" .root -}}
{{- else -}}
{{- .root.Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- /* The username the API server gives a component's ServiceAccount tokens. */ -}}
{{- define "libvirt-operator.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s-%s" (include "libvirt-operator.namespace" .) (include "libvirt-operator.fullname" .root) .component -}}
{{- end -}}
