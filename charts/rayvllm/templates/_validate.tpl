{{/*
rayvllm.validate.errors: every problem of the values that the schema cannot express, one `- ` line each, each
naming the value to change. validate.yaml fails once with all of them.
Usage: {{ $errors := include "rayvllm.validate.errors" . | trim }}
*/}}
{{- define "rayvllm.validate.errors" -}}
{{- $values := .Values }}
{{- $groupTypes := list }}
{{- $groupNames := list }}
{{- range $j, $group := $values.workerGroups }}
{{- $where := printf "workerGroups[%d] (%s)" $j $group.name }}
{{- $gpus := int (dig "limits" "nvidia.com/gpu" 0 ($group.resources | default dict)) }}
{{- $tolerations := $group.tolerations | default list }}
{{- if has $group.name $groupNames }}
- {{ $where }}: the name is used twice; worker group names must be unique.
{{- end }}
{{- $groupNames = append $groupNames $group.name }}
{{- $groupTypes = append $groupTypes (toString $group.acceleratorType) }}
{{- if lt $gpus 1 }}
- {{ $where }}: resources.limits has no nvidia.com/gpu; set the GPUs of each worker pod there (for example `nvidia.com/gpu: 1`).
{{- end }}
{{- $gpuToleration := false }}
{{- $aksSpotToleration := false }}
{{- range $tolerations }}
{{- $wildcard := and (not .key) (eq (toString .operator) "Exists") }}
{{- if or (eq (toString .key) "nvidia.com/gpu") $wildcard }}
{{- $gpuToleration = true }}
{{- end }}
{{- if or (eq (toString .key) "kubernetes.azure.com/scalesetpriority") $wildcard }}
{{- $aksSpotToleration = true }}
{{- end }}
{{- end }}
{{- /* Only AKS taints every spot node; GKE and Karpenter taint them only when the pool says so, which the
chart cannot see: NOTES.txt warns about a spot group that tolerates no spot taint instead. */}}
{{- if and (eq (toString (dig "kubernetes.azure.com/scalesetpriority" "" ($group.nodeSelector | default dict))) "spot") (not $aksSpotToleration) }}
- {{ $where }}: selects AKS spot nodes (nodeSelector kubernetes.azure.com/scalesetpriority: spot), which AKS always taints kubernetes.azure.com/scalesetpriority=spot:NoSchedule; add `{key: kubernetes.azure.com/scalesetpriority, operator: Equal, value: spot, effect: NoSchedule}` to workerGroups[{{ $j }}].tolerations, or its pods never schedule.
{{- end }}
{{- if not $gpuToleration }}
- {{ $where }}: no toleration for the nvidia.com/gpu:NoSchedule taint that GPU nodes carry; add `{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}` to workerGroups[{{ $j }}].tolerations.
{{- end }}
{{- if gt (int $group.minReplicas) (int $group.maxReplicas) }}
- {{ $where }}: minReplicas {{ $group.minReplicas }} is greater than maxReplicas {{ $group.maxReplicas }}.
{{- end }}
{{- if and $values.capacity.enabled (not (hasKey $values.capacity.gpuMemoryMiB (toString $group.acceleratorType))) }}
- {{ $where }}: acceleratorType {{ $group.acceleratorType }} is not in capacity.gpuMemoryMiB ({{ keys $values.capacity.gpuMemoryMiB | sortAlpha | join ", " }}); add its memory in MiB, or set capacity.enabled=false.
{{- end }}
{{- end }}
{{- $modelNames := list }}
{{- range $i, $model := include "rayvllm.models.list" . | fromJsonArray }}
{{- $where := printf "app.models[%d] (%s)" $i $model.name }}
{{- $engine := $model.engine | default dict }}
{{- if has $model.name $modelNames }}
- {{ $where }}: the name is used twice; model names must be unique.
{{- end }}
{{- $modelNames = append $modelNames $model.name }}
{{- with $model.lora }}
{{- range $k, $adapter := .adapters | default list }}
{{- if has $adapter.name $modelNames }}
- {{ $where }}: lora.adapters[{{ $k }}] ({{ $adapter.name }}): the name is used twice; model and adapter names must be unique.
{{- end }}
{{- $modelNames = append $modelNames $adapter.name }}
{{- end }}
{{- if and (not (kindIs "invalid" .max_cpu_loras)) (lt (int .max_cpu_loras) (int (default 1 .max_loras))) }}
- {{ $where }}: lora.max_cpu_loras {{ .max_cpu_loras }} is less than lora.max_loras {{ default 1 .max_loras }}; the CPU cache must hold every adapter of a batch.
{{- end }}
{{- end }}
{{- if not $engine.max_model_len }}
- {{ $where }}: engine.max_model_len is not set; set it explicitly (vLLM's auto-fitted length lets over-long prompts crash the engine, and the capacity check needs it).
{{- end }}
{{- /* An unset bound is AppConfig's default, 1, as the app will see it. */}}
{{- $autoscaling := $model.autoscaling | default dict }}
{{- $minReplicas := ternary $autoscaling.min_replicas 1 (hasKey $autoscaling "min_replicas") }}
{{- $maxReplicas := ternary $autoscaling.max_replicas 1 (hasKey $autoscaling "max_replicas") }}
{{- if gt (int $minReplicas) (int $maxReplicas) }}
- {{ $where }}: autoscaling.min_replicas {{ $minReplicas }} is greater than autoscaling.max_replicas {{ $maxReplicas }}{{ if not (and (hasKey $autoscaling "min_replicas") (hasKey $autoscaling "max_replicas")) }} (an unset bound is the app's default, 1){{ end }}.
{{- end }}
{{- if and (dig "openai" "enable_auto_tool_choice" false $model) (not (dig "openai" "tool_call_parser" "" $model)) }}
- {{ $where }}: openai.enable_auto_tool_choice is true, but openai.tool_call_parser is not set; name the parser of the model's family (for example `hermes` or `llama3_json`), or turn tool choice off.
{{- end }}
{{- $gpusPerReplica := int (default 1 $engine.tensor_parallel_size) }}
{{- $gpuSetting := printf "engine.tensor_parallel_size %d" $gpusPerReplica }}
{{- if not (kindIs "invalid" $model.num_gpus) }}
{{- $gpusPerReplica = int $model.num_gpus }}
{{- $gpuSetting = printf "num_gpus %d" $gpusPerReplica }}
{{- end }}
{{- $groups := include "rayvllm.capacity.workerGroups" (dict "root" $ "model" $model) | fromJsonArray }}
{{- if not $model.accelerator_type }}
- {{ $where }}: accelerator_type is not set; set it to the acceleratorType of a worker group ({{ $groupTypes | uniq | join ", " }}) so that its replicas land on, and scale, that pool.
{{- else if not $groups }}
- {{ $where }}: accelerator_type {{ $model.accelerator_type }} matches no workerGroups[].acceleratorType ({{ $groupTypes | uniq | join ", " }}); no pool can run its replicas.
{{- end }}
{{- range $groups }}
{{- if gt $gpusPerReplica (int .gpus) }}
- {{ $where }}: {{ $gpuSetting }} needs {{ $gpusPerReplica }} GPUs per replica, but workerGroups[{{ .index }}] ({{ .name }}) has nvidia.com/gpu {{ .gpus }}; lower it, or raise that group's nvidia.com/gpu limit.
{{- end }}
{{- end }}
{{- if and $values.capacity.enabled $model.accelerator_type $engine.max_model_len }}
{{- $gpuMiB := get $values.capacity.gpuMemoryMiB (toString $model.accelerator_type) }}
{{- if not $model.sizing }}
- {{ $where }}: sizing is not set; the capacity check needs it (`rayvllm capacity <model dir> --gpu {{ $model.accelerator_type }} --max-model-len {{ $engine.max_model_len }}` prints it), or set capacity.enabled=false.
{{- else if $gpuMiB }}
{{- $estimate := include "rayvllm.capacity.estimate" (dict "model" $model "gpuMiB" $gpuMiB "overheadMiB" $values.capacity.overheadMiB) | fromJson }}
{{- if not $estimate.fits }}
- {{ $where }}: does not fit one {{ $model.accelerator_type }}: it needs {{ printf "%.0f" $estimate.needMiB }} MiB per GPU (weights {{ printf "%.0f" $estimate.weightsMiB }} + KV cache {{ printf "%.0f" $estimate.kvCacheMiB }} for engine.max_model_len {{ int $engine.max_model_len }} + overhead {{ printf "%.0f" $estimate.overheadMiB }}), but engine.gpu_memory_utilization {{ default 0.9 $engine.gpu_memory_utilization }} of {{ $gpuMiB }} MiB gives {{ printf "%.0f" $estimate.budgetMiB }} MiB. {{ include "rayvllm.capacity.advice" (dict "model" $model "gpu" (toString $model.accelerator_type) "gpuMemoryMiB" $values.capacity.gpuMemoryMiB "overheadMiB" $values.capacity.overheadMiB) }}{{ if $model.lora }} LoRA adapters' memory (lora.max_loras x lora.max_lora_rank per layer) is not counted; it needs more.{{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $values.gcsFaultTolerance.enabled (not $values.gcsFaultTolerance.redisAddress) }}
- gcsFaultTolerance.redisAddress: not set, but gcsFaultTolerance.enabled is true; give the Redis address (`host:port`).
{{- end }}
{{- if and (eq $values.upgradeStrategy.type "NewClusterWithIncrementalUpgrade") (not (dig "gatewayClassName" "" $values.upgradeStrategy.clusterUpgradeOptions)) }}
- upgradeStrategy.clusterUpgradeOptions.gatewayClassName: NewClusterWithIncrementalUpgrade needs the Gateway API; set gatewayClassName, stepSizePercent and intervalSeconds.
{{- end }}
{{- if and (eq $values.modelCache.type "hostPath") (not $values.modelCache.hostPath.path) }}
- modelCache.hostPath.path: not set, but modelCache.type is hostPath.
{{- end }}
{{- range $pool := keys $values.monitoring.cost.gpuHourPrices | sortAlpha }}
{{- if not (has $pool $groupNames) }}
- monitoring.cost.gpuHourPrices.{{ $pool }}: names no worker group ({{ $groupNames | join ", " }}); its price would never be billed.
{{- end }}
{{- end }}
{{- with $values.serve.service }}
{{- if and .externalTrafficPolicy (eq .type "ClusterIP") }}
- serve.service.externalTrafficPolicy: {{ .externalTrafficPolicy }} applies to NodePort and LoadBalancer Services only, and serve.service.type is ClusterIP; Kubernetes would refuse the Service that KubeRay creates. Set serve.service.type, or leave externalTrafficPolicy empty.
{{- end }}
{{- if and .loadBalancerSourceRanges (ne .type "LoadBalancer") }}
- serve.service.loadBalancerSourceRanges: set, but serve.service.type is {{ .type }}; Kubernetes accepts source ranges on LoadBalancer Services only. Set serve.service.type=LoadBalancer, or limit clients with networkPolicy.serve.from.
{{- end }}
{{- end }}
{{- if and $values.httpRoute.enabled (not $values.httpRoute.parentRefs) }}
- httpRoute.parentRefs: empty, but httpRoute.enabled is true; name the Gateway the route attaches to.
{{- end }}
{{- include "rayvllm.validate.shutdown" (dict "group" $values.head "where" "head") }}
{{- range $j, $group := $values.workerGroups }}
{{- include "rayvllm.validate.shutdown" (dict "group" $group "where" (printf "workerGroups[%d] (%s)" $j $group.name)) }}
{{- end }}
{{- include "rayvllm.validate.apiKeys" . }}
{{- include "rayvllm.validate.networkPolicy" . }}
{{- end }}

{{/*
rayvllm.validate.shutdown: a group whose preStop sleep and Ray drain do not fit its grace period.
Usage: {{- include "rayvllm.validate.shutdown" (dict "group" $group "where" "head") }}
*/}}
{{- define "rayvllm.validate.shutdown" -}}
{{- $shutdown := include "rayvllm.ray.shutdownTimes" .group | fromJson }}
{{- if lt (int $shutdown.grace) (add $shutdown.preStop $shutdown.drain) }}
- {{ .where }}: terminationGracePeriodSeconds {{ $shutdown.grace }} is shorter than preStopSleepSeconds {{ $shutdown.preStop }} + drainTimeoutSeconds {{ $shutdown.drain }}; the pod would be killed mid-drain. Raise terminationGracePeriodSeconds, or lower the other two (docs/spot.md has values per cloud).
{{- end }}
{{- end }}

{{/*
rayvllm.validate.apiKeys: `apiKeys` and a hand-set `app.auth.api_keys_dir` that disagree.
Usage: {{- include "rayvllm.validate.apiKeys" . }}
*/}}
{{- define "rayvllm.validate.apiKeys" -}}
{{- $apiKeys := .Values.apiKeys }}
{{- $keysDir := dig "auth" "api_keys_dir" "" .Values.app }}
{{- $mounted := list }}
{{- range .Values.pod.volumeMounts }}{{ $mounted = append $mounted (toString .mountPath) }}{{ end }}
{{- if and $apiKeys.existingSecret $keysDir (ne $keysDir $apiKeys.mountPath) }}
- app.auth.api_keys_dir: {{ $keysDir }}, but apiKeys.existingSecret is mounted at apiKeys.mountPath {{ $apiKeys.mountPath }}; leave app.auth.api_keys_dir unset (the chart sets it).
{{- else if and $keysDir (not $apiKeys.existingSecret) (not (has $keysDir $mounted)) }}
- app.auth.api_keys_dir: {{ $keysDir }} is set, but nothing is mounted there; set apiKeys.existingSecret to the Secret of the keys instead (or mount it yourself through pod.volumes and pod.volumeMounts).
{{- end }}
{{- if and $apiKeys.existingSecret (or (eq (trimSuffix "/" $apiKeys.mountPath) (trimSuffix "/" .Values.modelCache.mountPath)) (has $apiKeys.mountPath $mounted)) }}
- apiKeys.mountPath: {{ $apiKeys.mountPath }} is already a mount (modelCache.mountPath or pod.volumeMounts); pick a directory of its own.
{{- end }}
{{- end }}

{{/*
rayvllm.validate.networkPolicy: extra ingress rules that would open every port, or one of Ray's own.
Usage: {{- include "rayvllm.validate.networkPolicy" . }}
*/}}
{{- define "rayvllm.validate.networkPolicy" -}}
{{- $rayPorts := list "6379" "8265" "10001" "gcs" "dashboard" "client" }}
{{- range $i, $rule := .Values.networkPolicy.extraIngress }}
{{- if not $rule.ports }}
- networkPolicy.extraIngress[{{ $i }}]: names no ports, so it would open every port, Ray's GCS (6379), dashboard (8265) and client (10001) included; list the ports it opens.
{{- end }}
{{- range $rule.ports }}
{{- if has (toString .port) $rayPorts }}
- networkPolicy.extraIngress[{{ $i }}]: opens port {{ .port }}, one of Ray's unauthenticated ports (GCS 6379, dashboard 8265, client 10001), which stay within the release; use `kubectl port-forward` to reach them.
{{- end }}
{{- end }}
{{- end }}
{{- end }}
