{{/*
Common helpers: names and labels shared by every object of the chart.
*/}}

{{/*
rayvllm.common.name: the chart's name, or nameOverride.
Usage: {{ include "rayvllm.common.name" . }}
*/}}
{{- define "rayvllm.common.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
rayvllm.common.fullname: the release-qualified name that objects are named after. Kept to 47 characters,
KubeRay's limit on a RayService name (it derives `<name>-xxxxx-head-svc` and the like from it).
Usage: {{ include "rayvllm.common.fullname" . }}
*/}}
{{- define "rayvllm.common.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
rayvllm.common.chart: chart name and version, for the helm.sh/chart label.
Usage: {{ include "rayvllm.common.chart" . }}
*/}}
{{- define "rayvllm.common.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
rayvllm.common.selectorLabels: the immutable labels that selectors match. Never chart version or user labels.
Usage: {{- include "rayvllm.common.selectorLabels" . | nindent 4 }}
*/}}
{{- define "rayvllm.common.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rayvllm.common.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
rayvllm.common.labels: the full labels of every object: selector labels, chart, version, manager and
commonLabels.
Usage: {{- include "rayvllm.common.labels" . | nindent 4 }}
*/}}
{{- define "rayvllm.common.labels" -}}
{{ include "rayvllm.common.selectorLabels" . }}
helm.sh/chart: {{ include "rayvllm.common.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rayvllm
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
rayvllm.common.serviceAccountName: the ServiceAccount the Ray pods run as.
Usage: {{ include "rayvllm.common.serviceAccountName" . }}
*/}}
{{- define "rayvllm.common.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rayvllm.common.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
rayvllm.common.image: the image reference, by digest when one is given, else by tag.
Usage: {{ include "rayvllm.common.image" . }}
*/}}
{{- define "rayvllm.common.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}

{{/*
rayvllm.common.pinnedImage: Ray's published image of the pinned matrix, the one image whose stack the chart can
vouch for: the first of Chart.yaml's artifacthub.io/images, which tests/chart/test_chart_image.py keeps equal
to the default `image` and to image/Dockerfile's base.
Usage: {{ include "rayvllm.common.pinnedImage" . }}
*/}}
{{- define "rayvllm.common.pinnedImage" -}}
{{- (first (index .Chart.Annotations "artifacthub.io/images" | fromYamlArray)).image }}
{{- end }}
