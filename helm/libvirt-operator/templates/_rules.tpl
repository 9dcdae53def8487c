{{- /*
The alerting rule groups, one source for the PrometheusRule (spec.groups) and the rules
ConfigMap (a Prometheus rules file for a Prometheus without the Prometheus Operator).
Every `for:` is metrics.prometheusRule.for.*; test/integration/prometheus-rules.test.ts unit-tests
these rendered rules with promtool, and prometheus-e2e.test.ts runs them in a real Prometheus.
*/ -}}

{{- /* The scrape job of a component's metrics ("controller" or "agent"): dict "root" . "component" name. */ -}}
{{- define "libvirt-operator.metricsJob" -}}
{{- $job := get .root.Values.metrics.prometheusRule.jobs .component -}}
{{- if $job -}}
{{- $job -}}
{{- else -}}
{{- printf "%s-%s-metrics" (include "libvirt-operator.fullname" .root) .component -}}
{{- end -}}
{{- end -}}

{{- /* One alert's labels: severity plus metrics.prometheusRule.alertLabels. */ -}}
{{- define "libvirt-operator.alertLabels" -}}
labels:
  severity: {{ .severity }}
  {{- with .root.Values.metrics.prometheusRule.alertLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{- /* runbook_url (on a line of its own, among an alert's annotations) when metrics.prometheusRule.runbookBaseUrl is set. */ -}}
{{- define "libvirt-operator.runbook" -}}
{{- with .root.Values.metrics.prometheusRule.runbookBaseUrl }}
        runbook_url: {{ printf "%s%s" . $.alert | quote }}
{{- end }}
{{- end -}}

{{- define "libvirt-operator.ruleGroups" -}}
{{- $r := .Values.metrics.prometheusRule -}}
{{- $for := $r.for -}}
{{- $agentJob := include "libvirt-operator.metricsJob" (dict "root" . "component" "agent") -}}
- name: libvirt-operator.rules
  rules:
    - alert: LibvirtOperatorVMUnhealthy
      expr: |-
        max by (namespace, name) (
          libvirt_operator_vm_status{status=~"ErrorUnschedulable|Failed|Unknown"} == 1
          or libvirt_operator_vm_ready == 0
        )
      for: {{ $for.vmUnhealthy }}
      {{- include "libvirt-operator.alertLabels" (dict "root" . "severity" "warning") | nindent 6 }}
      annotations:
        summary: {{ "VM {{ $labels.namespace }}/{{ $labels.name }} is stuck in an unhealthy state" | quote }}
        description: {{ printf "VM {{ $labels.namespace }}/{{ $labels.name }} has been ErrorUnschedulable, Failed or Unknown, or not Ready, for more than %s. Its status (kubectl get vm -n {{ $labels.namespace }} {{ $labels.name }} -o yaml) says why." $for.vmUnhealthy | quote }}
        {{- include "libvirt-operator.runbook" (dict "root" . "alert" "LibvirtOperatorVMUnhealthy") }}
    - alert: LibvirtOperatorVMPausedIOError
      expr: max by (namespace, name) (libvirt_operator_vm_paused_io_error) == 1
      for: {{ $for.vmPausedIOError }}
      {{- include "libvirt-operator.alertLabels" (dict "root" . "severity" "critical") | nindent 6 }}
      annotations:
        summary: {{ "VM {{ $labels.namespace }}/{{ $labels.name }} is paused by I/O errors" | quote }}
        description: {{ "libvirt paused VM {{ $labels.namespace }}/{{ $labels.name }} after a disk I/O error (typically its storage pool is full). Free space in the pool, then resume the VM." | quote }}
        {{- include "libvirt-operator.runbook" (dict "root" . "alert" "LibvirtOperatorVMPausedIOError") }}
    - alert: LibvirtOperatorNoNodeCanRunVMs
      expr: (max(libvirt_operator_nodes_ready) or vector(0)) == 0
      for: {{ $for.noNodeCanRunVMs }}
      {{- include "libvirt-operator.alertLabels" (dict "root" . "severity" "critical") | nindent 6 }}
      annotations:
        summary: "No node can run VMs"
        description: {{ printf "For more than %s no node has had an agent that is heard from and can run VMs (or no controller reported it). VMs cannot be started or placed." $for.noNodeCanRunVMs | quote }}
        {{- include "libvirt-operator.runbook" (dict "root" . "alert" "LibvirtOperatorNoNodeCanRunVMs") }}
    - alert: LibvirtOperatorAgentDown
      expr: |-
        up{job={{ $agentJob | quote }}} == 0
        or absent(up{job={{ $agentJob | quote }}})
      for: {{ $for.agentDown }}
      {{- include "libvirt-operator.alertLabels" (dict "root" . "severity" "critical") | nindent 6 }}
      annotations:
        summary: {{ "{{ with $labels.instance }}Node agent {{ . }} is down{{ else }}No node agent is scraped{{ end }}" | quote }}
        description: {{ printf "{{ with $labels.instance }}Prometheus has not scraped the node agent {{ . }} (job %s) for more than %s.{{ else }}Prometheus has had no target in job %s for more than %s: no agent runs, or the job is not the one metrics.prometheusRule.jobs.agent names.{{ end }} The VMs on a node whose agent is down are not managed." $agentJob $for.agentDown $agentJob $for.agentDown | quote }}
        {{- include "libvirt-operator.runbook" (dict "root" . "alert" "LibvirtOperatorAgentDown") }}
    - alert: LibvirtOperatorAgentNotHeartbeating
      expr: min by (node) (libvirt_operator_agent_heartbeat_age_seconds) > {{ $r.agentHeartbeatAgeSeconds }}
      for: {{ $for.agentNotHeartbeating }}
      {{- include "libvirt-operator.alertLabels" (dict "root" . "severity" "warning") | nindent 6 }}
      annotations:
        summary: {{ "The agent on node {{ $labels.node }} is not heartbeating" | quote }}
        description: {{ printf "The agent on node {{ $labels.node }} has not renewed its heartbeat for {{ $value | humanizeDuration }} (threshold %ds, held for %s). The controller does not place VMs on that node while it is silent." (int $r.agentHeartbeatAgeSeconds) $for.agentNotHeartbeating | quote }}
        {{- include "libvirt-operator.runbook" (dict "root" . "alert" "LibvirtOperatorAgentNotHeartbeating") }}
    - alert: LibvirtOperatorNoLeader
      expr: (max(libvirt_operator_controller_leader) or vector(0)) == 0
      for: {{ $for.noLeader }}
      {{- include "libvirt-operator.alertLabels" (dict "root" . "severity" "critical") | nindent 6 }}
      annotations:
        summary: "No libvirt-operator controller is leading"
        description: {{ printf "For more than %s no controller replica has held the leader lease (or none was scraped). VMs, disks and snapshots are not reconciled." $for.noLeader | quote }}
        {{- include "libvirt-operator.runbook" (dict "root" . "alert" "LibvirtOperatorNoLeader") }}
    - alert: LibvirtOperatorSnapshotPolicyFailing
      expr: |-
        max by (namespace, name) (
          libvirt_operator_vm_snapshot_policy_halted == 1
          or libvirt_operator_vm_snapshot_policy_consecutive_failures >= {{ $r.snapshotPolicyFailures }}
        )
      for: {{ $for.snapshotPolicyFailing }}
      {{- include "libvirt-operator.alertLabels" (dict "root" . "severity" "warning") | nindent 6 }}
      annotations:
        summary: {{ "Scheduled snapshots of VM {{ $labels.namespace }}/{{ $labels.name }} are failing" | quote }}
        description: {{ printf "The snapshot policy of VM {{ $labels.namespace }}/{{ $labels.name }} has failed %d or more times in a row for more than %s, or halted after its maxFailures (condition SnapshotPolicy=False). Its failed VMSnapshots say why." (int $r.snapshotPolicyFailures) $for.snapshotPolicyFailing | quote }}
        {{- include "libvirt-operator.runbook" (dict "root" . "alert" "LibvirtOperatorSnapshotPolicyFailing") }}
    - alert: LibvirtOperatorPoolNearlyFull
      expr: |-
        max by (node, pool) (
          libvirt_operator_pool_available_bytes / libvirt_operator_pool_capacity_bytes
        ) * 100 < {{ $r.poolAvailablePercent }}
      for: {{ $for.poolNearlyFull }}
      {{- include "libvirt-operator.alertLabels" (dict "root" . "severity" "warning") | nindent 6 }}
      annotations:
        summary: {{ "Storage pool {{ $labels.pool }} on node {{ $labels.node }} is nearly full" | quote }}
        description: {{ printf "Storage pool {{ $labels.pool }} on node {{ $labels.node }} has {{ $value | printf \"%%.1f\" }}%% of its capacity available (threshold %v%%). VMs writing to a full pool are paused by I/O errors." $r.poolAvailablePercent | quote }}
        {{- include "libvirt-operator.runbook" (dict "root" . "alert" "LibvirtOperatorPoolNearlyFull") }}
    - alert: LibvirtOperatorReconcileErrors
      expr: sum by (component, controller) (rate(libvirt_operator_reconcile_errors_total[10m])) > {{ $r.reconcileErrorsPerSecond }}
      for: {{ $for.reconcileErrors }}
      {{- include "libvirt-operator.alertLabels" (dict "root" . "severity" "warning") | nindent 6 }}
      annotations:
        summary: {{ "The {{ $labels.component }}'s {{ $labels.controller }} reconciles keep failing" | quote }}
        description: {{ printf "The {{ $labels.component }}'s {{ $labels.controller }} reconciler has failed {{ $value | humanize }} times a second (threshold %v) for more than %s. Its log says why." $r.reconcileErrorsPerSecond $for.reconcileErrors | quote }}
        {{- include "libvirt-operator.runbook" (dict "root" . "alert" "LibvirtOperatorReconcileErrors") }}
{{- end -}}
