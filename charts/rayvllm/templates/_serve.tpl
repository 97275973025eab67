{{/*
rayvllm.serve.config: the serveConfigV2 document. One application whose `args` are `.Values.app`: the keys
are those of rayvllm.config.AppConfig, which `rayvllm.serve.builder:build_app` validates. The additions: each model has
`modelOverrides` merged over it (templates/_models.tpl); with `apiKeys.existingSecret`, `auth.api_keys_dir`
names where that Secret is mounted.
Usage: {{- include "rayvllm.serve.config" . | nindent 4 }}
*/}}
{{- define "rayvllm.serve.config" -}}
{{- $args := deepCopy .Values.app }}
{{- $_ := set $args "models" (include "rayvllm.models.list" . | fromJsonArray) }}
{{- if .Values.apiKeys.existingSecret }}
{{- $auth := merge (dict "api_keys_dir" .Values.apiKeys.mountPath) ($args.auth | default dict) }}
{{- $_ := set $args "auth" $auth }}
{{- end }}
{{- $application := dict
  "name" .Values.serve.applicationName
  "import_path" "rayvllm.serve.builder:build_app"
  "route_prefix" "/"
  "args" $args
}}
{{- $config := dict
  "proxy_location" .Values.serve.proxyLocation
  "http_options" (dict "host" "0.0.0.0" "port" 8000)
  "applications" (list $application)
}}
{{- toYaml $config }}
{{- end }}

{{/*
rayvllm.serve.httpProxy: Ray Serve's request path, `proxy` or `haproxy`: `.Values.serve.httpProxy`, or the
deprecated `.Values.serve.ingress` while it is set (templates/_deprecations.tpl warns about it).
Usage: {{ include "rayvllm.serve.httpProxy" .Values.serve }}
*/}}
{{- define "rayvllm.serve.httpProxy" -}}
{{- default .httpProxy .ingress }}
{{- end }}
