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

{{/*
rayvllm.serve.serviceName: the Service in front of Ray Serve's HTTP proxies (RayService spec.serveService).
Usage: {{ include "rayvllm.serve.serviceName" . }}
*/}}
{{- define "rayvllm.serve.serviceName" -}}
{{- printf "%s-serve-svc" (include "rayvllm.common.fullname" .) }}
{{- end }}

{{/*
rayvllm.serve.env: Ray Serve's serving-path switches (`.Values.serve.httpProxy`, `.haproxy`,
`.throughputOptimized`, `.workerNiceness`), read by the Serve controller, the raylet and the replicas at start, so every Ray container
gets them.
Usage: {{- include "rayvllm.serve.env" .Values.serve | nindent 8 }}
*/}}
{{- define "rayvllm.serve.env" -}}
{{- if eq (include "rayvllm.serve.httpProxy" .) "haproxy" }}
- name: RAY_SERVE_ENABLE_HA_PROXY
  value: "1"
- name: RAY_SERVE_HAPROXY_MAXCONN
  value: {{ .haproxy.maxConnections | quote }}
{{- if .haproxy.retryLostRequests }}
{{- /* Ray 2.58 writes RETRY_ON verbatim into haproxy.cfg's defaults section and has no switch for
  http-buffer-request, without which HAProxy cannot replay a POST: it rides on the value's second line. */}}
- name: RAY_SERVE_HAPROXY_RETRY_ON
  value: "conn-failure empty-response junk-response\n    option http-buffer-request"
- name: RAY_SERVE_HAPROXY_RETRIES
  value: "3"
{{- end }}
{{- end }}
{{- if .throughputOptimized }}
- name: RAY_SERVE_THROUGHPUT_OPTIMIZED
  value: "1"
{{- end }}
{{- if not (kindIs "invalid" .workerNiceness) }}
- name: RAY_worker_niceness
  value: {{ .workerNiceness | quote }}
{{- end }}
{{- end }}
