{{/*
Peers and ports of the NetworkPolicy around the Ray pods (networkpolicy.yaml).
*/}}

{{/*
rayvllm.networkPolicy.rayPods: a label selector of the release's Ray pods, head and workers of every
RayCluster the RayService runs (two during a NewCluster upgrade): the pod template's selector labels plus
`ray.io/cluster`, which KubeRay puts on every pod it creates.
Usage: {{- include "rayvllm.networkPolicy.rayPods" . | nindent 4 }}
*/}}
{{- define "rayvllm.networkPolicy.rayPods" -}}
matchLabels:
  {{- include "rayvllm.common.selectorLabels" . | nindent 2 }}
matchExpressions:
  - key: ray.io/cluster
    operator: Exists
{{- end }}

{{/*
rayvllm.networkPolicy.ports: NetworkPolicy ports (TCP) from a list of container port names.
Usage: {{- include "rayvllm.networkPolicy.ports" (list "metrics" "as-metrics") | nindent 6 }}
*/}}
{{- define "rayvllm.networkPolicy.ports" -}}
{{- $ports := list }}
{{- range . }}{{ $ports = append $ports (dict "protocol" "TCP" "port" .) }}{{ end }}
{{- toYaml $ports }}
{{- end }}

{{/*
rayvllm.networkPolicy.peers: one NetworkPolicy peer from a `{namespaceSelector, podSelector}` of the values.
Usage: {{- include "rayvllm.networkPolicy.peers" .Values.networkPolicy.metrics | nindent 8 }}
*/}}
{{- define "rayvllm.networkPolicy.peers" -}}
{{- toYaml (list (dict "namespaceSelector" .namespaceSelector "podSelector" .podSelector)) }}
{{- end }}

{{/*
rayvllm.networkPolicy.redisPort: the port of gcsFaultTolerance.redisAddress (`host:port`), 6379 without one.
Usage: {{ include "rayvllm.networkPolicy.redisPort" . }}
*/}}
{{- define "rayvllm.networkPolicy.redisPort" -}}
{{- $address := .Values.gcsFaultTolerance.redisAddress | trimPrefix "redis://" | trimPrefix "rediss://" }}
{{- $port := regexFind ":[0-9]+$" $address | trimPrefix ":" }}
{{- default "6379" $port }}
{{- end }}
