{{/*
The model cache: the volume the weights and compiled kernels live on, and the variables that point there.
*/}}

{{/*
rayvllm.modelCache.volume: the volume source of the model cache, from `.Values.modelCache`.
Usage: {{- include "rayvllm.modelCache.volume" $ | nindent 6 }}
*/}}
{{- define "rayvllm.modelCache.volume" -}}
{{- $cache := .Values.modelCache }}
{{- if eq $cache.type "pvc" }}
persistentVolumeClaim:
  claimName: {{ include "rayvllm.modelCache.claimName" . }}
{{- else if eq $cache.type "hostPath" }}
hostPath:
  path: {{ $cache.hostPath.path }}
  type: {{ $cache.hostPath.type }}
{{- else }}
emptyDir:
  {{- with $cache.emptyDir.sizeLimit }}
  sizeLimit: {{ . }}
  {{- else }} {}
  {{- end }}
{{- end }}
{{- end }}

{{/*
rayvllm.modelCache.claimName: the PersistentVolumeClaim of the model cache.
Usage: {{ include "rayvllm.modelCache.claimName" . }}
*/}}
{{- define "rayvllm.modelCache.claimName" -}}
{{- default (printf "%s-model-cache" (include "rayvllm.common.fullname" .)) .Values.modelCache.pvc.existingClaim }}
{{- end }}

{{/*
rayvllm.modelCache.env: the cache directories under the model cache's mount path. Without them a new replica
recompiles its kernels (about 2 minutes for an 8B model on an H100) on every start.
Usage: {{- include "rayvllm.modelCache.env" .Values.modelCache.mountPath | nindent 8 }}
*/}}
{{- define "rayvllm.modelCache.env" -}}
{{- $directories := dict
  "HF_HOME" "huggingface"
  "VLLM_CACHE_ROOT" "vllm"
  "FLASHINFER_WORKSPACE_BASE" "flashinfer"
  "TRITON_CACHE_DIR" "triton"
  "TORCHINDUCTOR_CACHE_DIR" "torchinductor"
  "CUDA_CACHE_PATH" "nv-compute-cache"
}}
{{- range $name, $directory := $directories }}
- name: {{ $name }}
  value: {{ printf "%s/%s" $ $directory | quote }}
{{- end }}
{{- end }}
