{{/*
The capacity check: does a model fit its GPU? The arithmetic of `rayvllm capacity` (app/src/rayvllm/capacity.py);
tests/chart/test_capacity.py checks that both give the same numbers.
*/}}

{{/*
rayvllm.capacity.estimate: the memory one GPU of a replica needs, as JSON (MiB, floats):
  weights   = parameters x weight_bytes_per_param / tensor_parallel_size
  kvPerToken = 2 x num_layers x ceil(num_kv_heads / tensor_parallel_size) x head_dim x kv_cache_bytes_per_value
  kvCache   = kvPerToken x max_model_len (one sequence at full length, which vLLM requires at start)
  budget    = gpu_memory_utilization x the GPU's memory
  fits      = weights + kvCache + overhead <= budget
plus maxModelLen (the longest context that fits) and sequences (full-length sequences the KV room holds).
`model` is one `.Values.app.models` item with `sizing` and `engine.max_model_len` set; `gpuMiB` the GPU's memory.
Usage: {{ $estimate := include "rayvllm.capacity.estimate" (dict "model" $model "gpuMiB" 23034 "overheadMiB" 2048) | fromJson }}
*/}}
{{- define "rayvllm.capacity.estimate" -}}
{{- $sizing := .model.sizing }}
{{- $engine := .model.engine }}
{{- $mib := 1048576.0 }}
{{- $tp := float64 (default 1 $engine.tensor_parallel_size) }}
{{- $utilization := float64 (default 0.9 $engine.gpu_memory_utilization) }}
{{- $weights := divf (mulf $sizing.parameters $sizing.weight_bytes_per_param) $tp }}
{{- $kvHeads := ceil (divf $sizing.num_kv_heads $tp) }}
{{- $kvPerToken := mulf 2 $sizing.num_layers $kvHeads $sizing.head_dim $sizing.kv_cache_bytes_per_value }}
{{- $kvCache := mulf $kvPerToken $engine.max_model_len }}
{{- $overhead := mulf .overheadMiB $mib }}
{{- $budget := mulf $utilization .gpuMiB $mib }}
{{- $need := addf $weights $kvCache $overhead }}
{{- $room := subf $budget $weights $overhead }}
{{- $maxModelLen := max 0 (floor (divf $room $kvPerToken)) }}
{{- toJson (dict
  "weightsMiB" (divf $weights $mib)
  "kvPerTokenKiB" (divf $kvPerToken 1024)
  "kvCacheMiB" (divf $kvCache $mib)
  "overheadMiB" (float64 .overheadMiB)
  "needMiB" (divf $need $mib)
  "budgetMiB" (divf $budget $mib)
  "fits" (le $need $budget)
  "maxModelLen" $maxModelLen
  "sequences" (divf (max 0 $room) $kvCache)
) }}
{{- end }}

{{/*
rayvllm.capacity.workerGroups: the worker groups a model runs on (those of its accelerator_type), as a JSON
list of {index, name, gpus}.
Usage: {{ $groups := include "rayvllm.capacity.workerGroups" (dict "root" $ "model" $model) | fromJsonArray }}
*/}}
{{- define "rayvllm.capacity.workerGroups" -}}
{{- $groups := list }}
{{- range $index, $group := .root.Values.workerGroups }}
{{- if and $.model.accelerator_type (eq (toString $group.acceleratorType) (toString $.model.accelerator_type)) }}
{{- $gpus := int (dig "limits" "nvidia.com/gpu" 0 ($group.resources | default dict)) }}
{{- $groups = append $groups (dict "index" $index "name" $group.name "gpus" $gpus) }}
{{- end }}
{{- end }}
{{- toJson $groups }}
{{- end }}
