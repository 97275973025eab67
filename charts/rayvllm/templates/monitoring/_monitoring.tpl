{{/*
Monitoring helpers: the Ray PodMonitors and the rule groups of the PrometheusRule.
*/}}

{{/*
rayvllm.monitoring.labels: the labels of every monitoring object: the full labels plus monitoring.labels
(e.g. `release: kube-prometheus-stack`, which its default selectors require).
Usage: {{- include "rayvllm.monitoring.labels" . | nindent 4 }}
*/}}
{{- define "rayvllm.monitoring.labels" -}}
{{ include "rayvllm.common.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
rayvllm.monitoring.podMonitor: a PodMonitor for the Ray pods of one node type. Every endpoint gets the pod's
RayCluster (ray_io_cluster), worker group (ray_io_group, the node pool) and node as target labels: the rules
and dashboards aggregate on them.
Usage: {{ include "rayvllm.monitoring.podMonitor" (dict "root" . "nodeType" "head" "ports" (list "metrics")) }}
*/}}
{{- define "rayvllm.monitoring.podMonitor" -}}
{{- $root := .root }}
{{- $config := $root.Values.monitoring.podMonitor }}
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {{ printf "%s-%s" (include "rayvllm.common.fullname" $root) .nodeType }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "rayvllm.monitoring.labels" $root | nindent 4 }}
spec:
  namespaceSelector:
    matchNames:
      - {{ $root.Release.Namespace }}
  selector:
    matchLabels:
      {{- include "rayvllm.common.selectorLabels" $root | nindent 6 }}
      ray.io/node-type: {{ .nodeType }}
  podMetricsEndpoints:
    {{- range .ports }}
    - port: {{ . }}
      path: /metrics
      {{- with $config.interval }}
      interval: {{ . }}
      {{- end }}
      {{- with $config.scrapeTimeout }}
      scrapeTimeout: {{ . }}
      {{- end }}
      relabelings:
        - action: replace
          sourceLabels: [__meta_kubernetes_pod_label_ray_io_cluster]
          targetLabel: ray_io_cluster
        - action: replace
          sourceLabels: [__meta_kubernetes_pod_label_ray_io_group]
          targetLabel: ray_io_group
        - action: replace
          sourceLabels: [__meta_kubernetes_pod_node_name]
          targetLabel: node
        {{- with $config.relabelings }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $config.metricRelabelings }}
      metricRelabelings:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
{{- end }}

{{/*
rayvllm.monitoring.ruleGroups: the rule groups of files/rules/*.yaml with their ${...} placeholders filled
(namespace, rayservice, and monitoring.prometheusRule.thresholds), disabled alerts left out, alertLabels and
runbook_url added to every alert, then the price series of monitoring.cost.gpuHourPrices: one per pool and
capacity type, `billed="true"` on the one the worker group of that name runs on (its `spot` flag).
Usage: {{- include "rayvllm.monitoring.ruleGroups" . | nindent 4 }}
*/}}
{{- define "rayvllm.monitoring.ruleGroups" -}}
{{- $config := .Values.monitoring.prometheusRule }}
{{- $vars := merge (dict "namespace" .Release.Namespace "rayservice" (include "rayvllm.common.fullname" .)) $config.thresholds }}
{{- $runbookBase := trimSuffix "/" $config.runbookBaseUrl }}
{{- $groups := list }}
{{- range $path, $_ := .Files.Glob "files/rules/*.yaml" }}
{{- $text := $.Files.Get $path }}
{{- range $name, $value := $vars }}
{{- $text = replace (printf "${%s}" $name) (toString $value) $text }}
{{- end }}
{{- with regexFind "\\$\\{[A-Za-z0-9_]+\\}" $text }}
{{- fail (printf "%s uses %s, which is neither namespace, rayservice nor a key of monitoring.prometheusRule.thresholds" $path .) }}
{{- end }}
{{- $file := fromYaml $text }}
{{- if hasKey $file "Error" }}
{{- fail (printf "%s is not valid YAML: %s" $path $file.Error) }}
{{- end }}
{{- range $group := $file.groups }}
{{- $rules := list }}
{{- range $rule := $group.rules }}
{{- if not $rule.alert }}
{{- $rules = append $rules $rule }}
{{- else if not (has $rule.alert $config.disabledAlerts) }}
{{- $_ := set $rule "labels" (merge (dict) ($rule.labels | default dict) $config.alertLabels) }}
{{- $_ := set $rule.annotations "runbook_url" (printf "%s/%s.md" $runbookBase $rule.alert) }}
{{- $rules = append $rules $rule }}
{{- end }}
{{- end }}
{{- if $rules }}
{{- $groups = append $groups (dict "name" $group.name "rules" $rules) }}
{{- end }}
{{- end }}
{{- end }}
{{- $prices := list }}
{{- $spotPools := dict }}
{{- range .Values.workerGroups }}
{{- $_ := set $spotPools .name (ternary "spot" "on-demand" (default false .spot)) }}
{{- end }}
{{- range $pool, $price := .Values.monitoring.cost.gpuHourPrices }}
{{- range $capacityType, $key := dict "spot" "spot" "on-demand" "onDemand" }}
{{- if hasKey $price $key }}
{{- $billed := eq (get $spotPools $pool) $capacityType }}
{{- $labels := dict "namespace" $.Release.Namespace "ray_io_group" $pool "capacity_type" $capacityType "billed" (toString $billed) }}
{{- $prices = append $prices (dict "record" "rayvllm:gpu_hour_price:dollars" "expr" (printf "vector(%v)" (index $price $key)) "labels" $labels) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $prices }}
{{- $groups = append $groups (dict "name" "rayvllm.cost.prices" "rules" $prices) }}
{{- end }}
{{- toYaml $groups }}
{{- end }}
