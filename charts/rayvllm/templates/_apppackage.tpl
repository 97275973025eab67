{{/*
The rayvllm package that the chart carries (appPackage.source: chart): a ConfigMap of files/rayvllm/, mounted
in every Ray container at rayvllm.appPackage.mountPath, which leads PYTHONPATH.
*/}}

{{/*
rayvllm.appPackage.configMapName: the ConfigMap of the package's files.
Usage: {{ include "rayvllm.appPackage.configMapName" . }}
*/}}
{{- define "rayvllm.appPackage.configMapName" -}}
{{- printf "%s-app-package" (include "rayvllm.common.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
rayvllm.appPackage.mountPath: the directory that holds `rayvllm/` in the container, first on PYTHONPATH.
Usage: {{ include "rayvllm.appPackage.mountPath" . }}
*/}}
{{- define "rayvllm.appPackage.mountPath" -}}
/opt/rayvllm/lib
{{- end }}

{{/*
rayvllm.appPackage.key: the ConfigMap key of a chart file (`files/rayvllm/serve/builder.py` -> `rayvllm.serve.builder.py`); keys
cannot hold `/`, the volume's items map them back to paths.
Usage: {{ include "rayvllm.appPackage.key" "files/rayvllm/serve/builder.py" }}
*/}}
{{- define "rayvllm.appPackage.key" -}}
{{- trimPrefix "files/" . | replace "/" "." }}
{{- end }}

{{/*
rayvllm.appPackage.volume: the volume of the package, each key at its path under the mount.
Usage: {{- include "rayvllm.appPackage.volume" $root | nindent 6 }}
*/}}
{{- define "rayvllm.appPackage.volume" -}}
configMap:
  name: {{ include "rayvllm.appPackage.configMapName" . }}
  items:
    {{- range $path, $_ := .Files.Glob "files/rayvllm/**" }}
    - key: {{ include "rayvllm.appPackage.key" $path }}
      path: {{ trimPrefix "files/" $path }}
    {{- end }}
{{- end }}

{{/*
rayvllm.appPackage.checksum: a digest of the package's files. On the pod template it makes a new package a
new RayCluster spec, so KubeRay rolls the cluster by upgradeStrategy instead of leaving old code running.
Usage: {{ include "rayvllm.appPackage.checksum" . }}
*/}}
{{- define "rayvllm.appPackage.checksum" -}}
{{- .Files.Glob "files/rayvllm/**" | toJson | sha256sum }}
{{- end }}
