{{/* Chart name, capped at 63 characters (a label value). */}}
{{- define "efa-dra-driver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it contains the chart name. */}}
{{- define "efa-dra-driver.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "efa-dra-driver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: immutable, so only name, instance and component. */}}
{{- define "efa-dra-driver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "efa-dra-driver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: kubeletplugin
{{- end }}

{{- define "efa-dra-driver.labels" -}}
helm.sh/chart: {{ include "efa-dra-driver.chart" . }}
{{ include "efa-dra-driver.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "efa-dra-driver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "efa-dra-driver.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The plugin directory on the node: sockets, and the checkpoints unless stateDir is set. */}}
{{- define "efa-dra-driver.pluginDir" -}}
{{- printf "%s/plugins/%s" .Values.kubeletDir .Values.driverName }}
{{- end }}
