{{/*
The capacity check: does a model fit its GPU? The arithmetic of `rayvllm capacity` (app/src/rayvllm/capacity.py);
tests/chart/test_chart_capacity.py checks that both give the same numbers and the same advice.
*/}}

{{/*
rayvllm.capacity.estimate: the memory one GPU of a replica needs, as JSON (MiB, floats):
  weights   = parameters x weight_bytes_per_param / tensor_parallel_size
  kvPerToken = 2 x num_layers x ceil(num_kv_heads / tensor_parallel_size) x head_dim x kv_cache_bytes_per_value
  kvCache   = kvPerToken x max_model_len (one sequence at full length, which vLLM requires at start)
  budget    = gpu_memory_utilization x the GPU's memory
  fits      = weights + kvCache + overhead <= budget
plus maxModelLen (the longest context that fits) and sequences (full-length sequences the KV room holds).
`model` is one `.Values.app.models` item with `sizing` and `engine.max_model_len` set; `gpuMiB` the GPU's memory;
`tensorParallelSize`, when given, replaces the model's engine.tensor_parallel_size (for the advice below).
Usage: {{ $estimate := include "rayvllm.capacity.estimate" (dict "model" $model "gpuMiB" 23034 "overheadMiB" 2048) | fromJson }}
*/}}
{{- define "rayvllm.capacity.estimate" -}}
{{- $sizing := .model.sizing }}
{{- $engine := .model.engine }}
{{- $mib := 1048576.0 }}
{{- $tp := float64 (default (default 1 $engine.tensor_parallel_size) .tensorParallelSize) }}
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
rayvllm.capacity.advice: what to change when a model does not fit one GPU of its type, one or two sentences
(`advice()` in app/src/rayvllm/capacity.py writes the same). When the weights fit, a shorter max_model_len
helps; when they alone fill the GPU, only sharding or smaller weights do. Sharding tries
tensor_parallel_size 2, 4 and 8: powers of two divide the head counts vLLM needs them to, and 8 GPUs is the
most one node of these types carries, while the chart keeps a replica within one worker pod.
`gpu` is the model's accelerator type and `gpuMemoryMiB` the table of every type (capacity.gpuMemoryMiB).
Usage: {{ include "rayvllm.capacity.advice" (dict "model" $model "gpu" "L4" "gpuMemoryMiB" $table "overheadMiB" 2048) }}
*/}}
{{- define "rayvllm.capacity.advice" -}}
{{- $tp := int (default 1 .model.engine.tensor_parallel_size) }}
{{- $args := dict "model" .model "gpuMiB" (get .gpuMemoryMiB .gpu) "overheadMiB" .overheadMiB }}
{{- $estimate := include "rayvllm.capacity.estimate" $args | fromJson }}
{{- $fitTP := 0 }}
{{- $shortTP := 0 }}
{{- $shortLen := 0 }}
{{- range $candidate := list 2 4 8 }}
{{- if gt $candidate $tp }}
{{- $sharded := include "rayvllm.capacity.estimate" (merge (dict "tensorParallelSize" $candidate) $args) | fromJson }}
{{- if and (not $fitTP) $sharded.fits }}{{ $fitTP = $candidate }}{{ end }}
{{- if and (not $shortTP) (gt (int $sharded.maxModelLen) 0) }}{{ $shortTP = $candidate }}{{ $shortLen = int $sharded.maxModelLen }}{{ end }}
{{- end }}
{{- end }}
{{- $elsewhere := list }}
{{- range $type := keys .gpuMemoryMiB | sortAlpha }}
{{- if (include "rayvllm.capacity.estimate" (merge (dict "gpuMiB" (get $.gpuMemoryMiB $type)) $args) | fromJson).fits }}
{{- $elsewhere = append $elsewhere $type }}
{{- end }}
{{- end }}
{{- $nowhere := printf "no engine.tensor_parallel_size up to 8 fits it on %s" .gpu }}
{{- if gt (len $elsewhere) 1 }}{{ $elsewhere = list (join ", " (initial $elsewhere)) (last $elsewhere) }}{{ end }}
{{- if $elsewhere }}{{ $nowhere = printf "%s (it fits on %s as set)" $nowhere (join " or " $elsewhere) }}{{ end }}
{{- if gt (int $estimate.maxModelLen) 0 }}
{{- $options := list (printf "Lower engine.max_model_len to at most %d" (int $estimate.maxModelLen)) }}
{{- if gt (float64 .model.sizing.kv_cache_bytes_per_value) 1.0 }}{{ $options = append $options "use engine.kv_cache_dtype fp8" }}{{ end }}
{{- if $fitTP }}
{{- $options = append $options "quantize the weights" }}
{{- printf "%s, or shard it with engine.tensor_parallel_size %d and %d GPUs per worker (nvidia.com/gpu: %d)." (join ", " $options) $fitTP $fitTP $fitTP }}
{{- else }}
{{- printf "%s or quantize the weights: %s." (join ", " $options) $nowhere }}
{{- end }}
{{- else }}
{{- printf "Its weights and overhead alone (%.0f MiB per GPU) leave no room for the KV cache, so a shorter engine.max_model_len cannot help: " (addf $estimate.weightsMiB $estimate.overheadMiB) }}
{{- if $fitTP }}
{{- printf "shard it with engine.tensor_parallel_size %d and %d GPUs per worker (nvidia.com/gpu: %d), or quantize the weights." $fitTP $fitTP $fitTP }}
{{- else if $shortTP }}
{{- printf "engine.tensor_parallel_size %d with %d GPUs per worker (nvidia.com/gpu: %d) fits it with engine.max_model_len at most %d; or quantize the weights." $shortTP $shortTP $shortTP $shortLen }}
{{- else }}
{{- printf "%s; quantize the weights, or use a GPU type with more memory." $nowhere }}
{{- end }}
{{- end }}
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
