{{/*
The served models as the app will see them: `app.models` with `modelOverrides` merged over each entry.
Helm replaces a list from a later values file whole, so a profile (values/profiles/*.yaml) cannot change
`app.models[0].autoscaling` without repeating the overlay's model; `modelOverrides` is a map, and merges.
*/}}

{{/*
rayvllm.models.list: `app.models`, each with `modelOverrides` deep-merged over it, as a JSON list.
Usage: {{- $models := include "rayvllm.models.list" . | fromJsonArray }}
*/}}
{{- define "rayvllm.models.list" -}}
{{- $models := list }}
{{- range .Values.app.models }}
{{- $models = append $models (include "rayvllm.models.merge" (dict "base" . "over" $.Values.modelOverrides) | fromJson) }}
{{- end }}
{{- toJson $models }}
{{- end }}

{{/*
rayvllm.models.merge: `over` merged into a copy of `base`, maps key by key, other values replaced. Zero and
false replace too, unlike sprig's mergeOverwrite (`upscale_delay_s: 0` must win).
Usage: {{ include "rayvllm.models.merge" (dict "base" $model "over" $overrides) | fromJson }}
*/}}
{{- define "rayvllm.models.merge" -}}
{{- $merged := deepCopy .base }}
{{- range $key, $value := .over }}
{{- $current := get $merged $key }}
{{- if and (kindIs "map" $value) (kindIs "map" $current) }}
{{- $_ := set $merged $key (include "rayvllm.models.merge" (dict "base" $current "over" $value) | fromJson) }}
{{- else }}
{{- $_ := set $merged $key $value }}
{{- end }}
{{- end }}
{{- toJson $merged }}
{{- end }}
