{{/*
Ray node groups: the one pod template, shared by the head group and every worker group, and the rest of a group spec.
*/}}

{{/*
rayvllm.ray.podTemplate: a pod template for a Ray node group. `group` is `.Values.head` or one item of
`.Values.workerGroups`; `nodeType` is `head` or `worker`. The group's own `env`, `volumes` and `volumeMounts`
come after those of `.Values.pod`; its `sidecars` after the Ray container, which KubeRay expects first.
Usage: {{- include "rayvllm.ray.podTemplate" (dict "root" $ "group" $group "nodeType" "worker") | nindent 6 }}
*/}}
{{- define "rayvllm.ray.podTemplate" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $group := .group }}
{{- $isHead := eq .nodeType "head" }}
{{- $shutdown := include "rayvllm.ray.shutdownTimes" $group | fromJson }}
{{- $apiKeys := $values.apiKeys }}
{{- $apiServerToken := and $isHead $values.autoscaler.enabled }}
{{- $appPackage := eq $values.appPackage.source "chart" -}}
metadata:
  labels:
    {{- $selector := include "rayvllm.common.selectorLabels" $root | fromYaml }}
    {{- $labels := merge (dict) $selector ($group.podLabels | default dict) $values.pod.labels (include "rayvllm.common.labels" $root | fromYaml) }}
    {{- toYaml $labels | nindent 4 }}
  {{- $annotations := merge (dict) ($group.podAnnotations | default dict) $values.pod.annotations }}
  {{- if $appPackage }}
  {{- $_ := set $annotations "rayvllm.io/app-package-checksum" (include "rayvllm.appPackage.checksum" $root) }}
  {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "rayvllm.common.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $values.serviceAccount.automountServiceAccountToken }}
  {{- with $values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $group.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $shutdown.grace }}
  {{- with $values.pod.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- include "rayvllm.ray.topologySpreadConstraints" (dict "root" $root "group" $group "constraints" .) | nindent 4 }}
  {{- end }}
  {{- with $group.initContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ ternary "ray-head" "ray-worker" $isHead }}
      image: {{ include "rayvllm.common.image" $root }}
      imagePullPolicy: {{ $values.image.pullPolicy }}
      {{- with $values.pod.containerSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $shutdown.preStop }}
      # Keeps serving while the pod's endpoints deregister; Ray's drain starts on the SIGTERM that follows.
      lifecycle:
        preStop:
          exec:
            command: ["sleep", "{{ $shutdown.preStop }}"]
      {{- end }}
      ports:
        {{- if $isHead }}
        - name: gcs
          containerPort: 6379
        - name: dashboard
          containerPort: 8265
        - name: client
          containerPort: 10001
        - name: as-metrics
          containerPort: 44217
        - name: dash-metrics
          containerPort: 44227
        {{- end }}
        - name: serve
          containerPort: 8000
        - name: metrics
          containerPort: 8080
      env:
        # Ray drains the node on SIGTERM (Serve stops routing to it) for this long; preStop + drain fit the grace.
        - name: RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S
          value: {{ $shutdown.drain | quote }}
        {{- include "rayvllm.modelCache.env" $values.modelCache.mountPath | nindent 8 }}
        {{- include "rayvllm.serve.env" $values.serve | nindent 8 }}
        {{- if $appPackage }}
        # Ahead of the image's site-packages: the chart's rayvllm is the one Serve imports.
        - name: PYTHONPATH
          value: {{ include "rayvllm.appPackage.mountPath" $root }}
        {{- end }}
        {{- with $values.hfToken.secretName }}
        - name: HF_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $values.hfToken.secretKey }}
        {{- end }}
        {{- with $values.pod.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $group.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $values.pod.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $group.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: model-cache
          mountPath: {{ $values.modelCache.mountPath }}
        {{- if $group.sharedMemorySize }}
        - name: dshm
          mountPath: /dev/shm
        {{- end }}
        {{- if $apiKeys.existingSecret }}
        # No subPath: only a whole-volume mount sees a rotated Secret.
        - name: api-keys
          mountPath: {{ $apiKeys.mountPath }}
          readOnly: true
        {{- end }}
        {{- if $appPackage }}
        - name: app-package
          mountPath: {{ include "rayvllm.appPackage.mountPath" $root }}
          readOnly: true
        {{- end }}
        {{- with $values.pod.volumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $group.volumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- with $group.sidecars }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumes:
    - name: model-cache
      {{- include "rayvllm.modelCache.volume" $root | trim | nindent 6 }}
    {{- with $group.sharedMemorySize }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ . }}
    {{- end }}
    {{- with $apiKeys.existingSecret }}
    - name: api-keys
      secret:
        secretName: {{ . }}
        defaultMode: 0440
    {{- end }}
    {{- if $apiServerToken }}
    - name: {{ include "rayvllm.autoscaler.tokenVolumeName" $root }}
      {{- include "rayvllm.autoscaler.tokenVolume" $root | nindent 6 }}
    {{- end }}
    {{- if $appPackage }}
    - name: app-package
      {{- include "rayvllm.appPackage.volume" $root | nindent 6 }}
    {{- end }}
    {{- with $values.pod.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $group.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
rayvllm.ray.shutdownTimes: how a Ray pod of a group stops, as JSON `{grace, preStop, drain}` in seconds. On
deletion the preStop sleep runs first (the endpoints deregister meanwhile), then SIGTERM starts Ray's drain;
both must fit in terminationGracePeriodSeconds. The drain defaults to grace - preStop - 5 s of margin for
Ray's own teardown.
Usage: {{- $shutdown := include "rayvllm.ray.shutdownTimes" $group | fromJson }}
*/}}
{{- define "rayvllm.ray.shutdownTimes" -}}
{{- $grace := 30 }}
{{- if not (kindIs "invalid" .terminationGracePeriodSeconds) }}{{ $grace = int .terminationGracePeriodSeconds }}{{ end }}
{{- $preStop := 5 }}
{{- if not (kindIs "invalid" .preStopSleepSeconds) }}{{ $preStop = int .preStopSleepSeconds }}{{ end }}
{{- $drain := max 0 (sub (sub $grace $preStop) 5) }}
{{- if not (kindIs "invalid" .drainTimeoutSeconds) }}{{ $drain = int .drainTimeoutSeconds }}{{ end }}
{{- dict "grace" $grace "preStop" $preStop "drain" $drain | toJson }}
{{- end }}

{{/*
rayvllm.ray.topologySpreadConstraints: the group's constraints; one without a labelSelector spreads the
group's own pods (`ray.io/group`), within one RayCluster (`matchLabelKeys: [ray.io/cluster]`).
Usage: {{- include "rayvllm.ray.topologySpreadConstraints" (dict "root" $ "group" $group "constraints" $list) | nindent 4 }}
*/}}
{{- define "rayvllm.ray.topologySpreadConstraints" -}}
{{- $constraints := list }}
{{- range .constraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $labels := merge (dict "ray.io/group" (default "headgroup" $.group.name)) (include "rayvllm.common.selectorLabels" $.root | fromYaml) }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" $labels) }}
{{- if not (hasKey $constraint "matchLabelKeys") }}
{{- $_ := set $constraint "matchLabelKeys" (list "ray.io/cluster") }}
{{- end }}
{{- end }}
{{- $constraints = append $constraints $constraint }}
{{- end }}
{{- toYaml $constraints }}
{{- end }}

{{/*
rayvllm.ray.startParams: a rayStartParams map; KubeRay wants every value as a string. Whole numbers are
written out (`4000000000`, not YAML's float `4e+09`), which `ray start` would reject.
Usage: {{- include "rayvllm.ray.startParams" $params | nindent 8 }}
*/}}
{{- define "rayvllm.ray.startParams" -}}
{{- $params := dict }}
{{- range $key, $value := . }}
{{- $text := toString $value }}
{{- if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}
{{- $text = printf "%d" (int64 $value) }}
{{- end }}
{{- $_ := set $params $key $text }}
{{- end }}
{{- toYaml $params }}
{{- end }}
