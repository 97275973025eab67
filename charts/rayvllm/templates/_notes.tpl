{{/*
rayvllm.notes.ingressScheme: `https` when the Ingress's TLS covers this host (by name, by a `*.` wildcard, or by
an entry without hosts, which covers them all), else `http`.
Usage: {{ include "rayvllm.notes.ingressScheme" (dict "tls" .Values.ingress.tls "host" "llm.example.com") }}
*/}}
{{- define "rayvllm.notes.ingressScheme" -}}
{{- $host := .host }}
{{- $tls := false }}
{{- range .tls }}
{{- if not .hosts }}{{ $tls = true }}{{ end }}
{{- range .hosts }}
{{- if or (eq . $host) (and (hasPrefix "*." .) (eq (trimPrefix "*." .) (regexReplaceAll "^[^.]*[.]" $host ""))) }}{{ $tls = true }}{{ end }}
{{- end }}
{{- end }}
{{- ternary "https" "http" $tls }}
{{- end }}

{{/*
rayvllm.notes.httpRouteScheme: the scheme of the HTTPRoute's hostnames, as JSON {scheme, assumed}. The chart
cannot see the Gateway's listeners, but a parentRef can pin one: by `port` (80 or 443) or by `sectionName`
(`http` or `https`, the listener names of the Gateway API's own examples). `http` only when every parentRef
pins a plain listener; otherwise `https`, which is how a Gateway usually serves a hostname (its HTTP listener,
if any, mostly redirects), `assumed` when no parentRef pins a TLS listener.
Usage: {{ $route := include "rayvllm.notes.httpRouteScheme" .Values.httpRoute.parentRefs | fromJson }}
*/}}
{{- define "rayvllm.notes.httpRouteScheme" -}}
{{- $plain := true }}
{{- $tls := false }}
{{- range . }}
{{- $listener := toString (default "" .sectionName) }}
{{- $port := int (default 0 .port) }}
{{- if or (eq $port 443) (eq $listener "https") }}{{ $tls = true }}{{ $plain = false }}
{{- else if not (or (eq $port 80) (eq $listener "http")) }}{{ $plain = false }}
{{- end }}
{{- end }}
{{- toJson (dict "scheme" (ternary "http" "https" $plain) "assumed" (and (not $plain) (not $tls))) }}
{{- end }}
