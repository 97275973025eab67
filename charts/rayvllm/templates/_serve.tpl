{{/*
rayvllm.serve.config: the serveConfigV2 document. One application whose `args` are `.Values.app`, verbatim:
the keys are those of rayvllm.config.AppConfig, which `rayvllm.app:build_app` validates.
Usage: {{- include "rayvllm.serve.config" . | nindent 4 }}
*/}}
{{- define "rayvllm.serve.config" -}}
{{- $application := dict
  "name" .Values.serve.applicationName
  "import_path" "rayvllm.app:build_app"
  "route_prefix" "/"
  "args" .Values.app
}}
{{- $config := dict
  "proxy_location" .Values.serve.proxyLocation
  "http_options" (dict "host" "0.0.0.0" "port" 8000)
  "applications" (list $application)
}}
{{- toYaml $config }}
{{- end }}
