{{/*
Values kept for one release under their old name: the templates read both, NOTES warns.
*/}}

{{/*
rayvllm.deprecations.warnings: one NOTES warning per deprecated value that is set, as a JSON list.
Usage: {{- $warnings = concat $warnings (include "rayvllm.deprecations.warnings" . | fromJsonArray) }}
*/}}
{{- define "rayvllm.deprecations.warnings" -}}
{{- $warnings := list }}
{{- with .Values.serve.ingress }}
{{- $warnings = append $warnings (printf "serve.ingress is deprecated and will be removed in the next release: rename it serve.httpProxy (Ray Serve's request path; the Kubernetes Ingress is ingress.*). Until then serve.ingress=%s wins over serve.httpProxy=%s." . $.Values.serve.httpProxy) }}
{{- end }}
{{- toJson $warnings }}
{{- end }}
