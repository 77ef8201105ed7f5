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

{{/* The HTTP port: healthPort (the aws-dranet chart's key) when set, else http.port. */}}
{{- define "efa-dra-driver.httpPort" -}}
{{- if kindIs "invalid" .Values.healthPort }}{{ .Values.http.port | int }}{{ else }}{{ .Values.healthPort | int }}{{ end }}
{{- end }}

{{/* The log verbosity: verbosity (the aws-dranet chart's key) when set, else logging.verbosity. */}}
{{- define "efa-dra-driver.verbosity" -}}
{{- if kindIs "invalid" .Values.verbosity }}{{ .Values.logging.verbosity | int }}{{ else }}{{ .Values.verbosity | int }}{{ end }}
{{- end }}

{{/* The DaemonSet's updateStrategy as YAML: a full strategy (type/rollingUpdate, the aws-dranet
chart's form) as given, else RollingUpdate with this chart's maxSurge/maxUnavailable. */}}
{{- define "efa-dra-driver.updateStrategy" -}}
{{- $u := .Values.updateStrategy }}
{{- if or $u.type $u.rollingUpdate }}
{{- $full := dict "type" (default "RollingUpdate" $u.type) }}
{{- if $u.rollingUpdate }}{{ $_ := set $full "rollingUpdate" $u.rollingUpdate }}{{ end }}
{{- toYaml $full }}
{{- else }}
type: RollingUpdate
rollingUpdate:
  maxSurge: {{ $u.maxSurge }}
  maxUnavailable: {{ $u.maxUnavailable }}
{{- end }}
{{- end }}

{{/* Required node affinity terms as a YAML list. Ours: (an EFA instance type, or the opt-in
label) and not Auto Mode and not excluded. Terms are ORed, so every term carries the
exclusions; the user's required terms are ANDed in by combining each of ours with each of
theirs. Empty when nothing restricts the nodes. */}}
{{- define "efa-dra-driver.requiredNodeTerms" -}}
{{- $common := list }}
{{- if .Values.excludeAutoModeNodes }}
{{- $common = append $common (dict "key" "eks.amazonaws.com/compute-type" "operator" "NotIn" "values" (list "auto")) }}
{{- end }}
{{- if .Values.excludeNodesWithLabel }}
{{- $common = append $common (dict "key" .Values.excludeNodesWithLabel "operator" "DoesNotExist") }}
{{- end }}
{{- $ours := list }}
{{- if .Values.supportedInstanceLabels.values }}
{{- range .Values.supportedInstanceLabels.keys }}
{{- $ours = append $ours (append $common (dict "key" . "operator" "In" "values" $.Values.supportedInstanceLabels.values)) }}
{{- end }}
{{- if .Values.nodeOptInLabel }}
{{- $ours = append $ours (append $common (dict "key" .Values.nodeOptInLabel "operator" "Exists")) }}
{{- end }}
{{- else if $common }}
{{- $ours = list $common }}
{{- end }}
{{- $theirs := list }}
{{- with .Values.affinity.nodeAffinity }}
{{- with .requiredDuringSchedulingIgnoredDuringExecution }}
{{- $theirs = .nodeSelectorTerms | default list }}
{{- end }}
{{- end }}
{{- $terms := list }}
{{- if and $ours $theirs }}
{{- range $o := $ours }}
{{- range $t := $theirs }}
{{- $term := dict "matchExpressions" (concat $o ($t.matchExpressions | default list)) }}
{{- if $t.matchFields }}{{ $_ := set $term "matchFields" $t.matchFields }}{{ end }}
{{- $terms = append $terms $term }}
{{- end }}
{{- end }}
{{- else if $ours }}
{{- range $o := $ours }}{{ $terms = append $terms (dict "matchExpressions" $o) }}{{ end }}
{{- else }}
{{- $terms = $theirs }}
{{- end }}
{{- if $terms }}{{ toYaml $terms }}{{ end }}
{{- end }}

{{/* The pod's affinity as YAML (nodeAffinity from requiredNodeTerms plus the user's preferred
terms; the user's podAffinity/podAntiAffinity as given); empty when there is none. */}}
{{- define "efa-dra-driver.affinity" -}}
{{- $affinity := omit (.Values.affinity | default dict) "nodeAffinity" }}
{{- $node := dict }}
{{- $terms := include "efa-dra-driver.requiredNodeTerms" . | fromYamlArray }}
{{- if $terms }}
{{- $_ := set $node "requiredDuringSchedulingIgnoredDuringExecution" (dict "nodeSelectorTerms" $terms) }}
{{- end }}
{{- with .Values.affinity.nodeAffinity }}
{{- with .preferredDuringSchedulingIgnoredDuringExecution }}
{{- $_ := set $node "preferredDuringSchedulingIgnoredDuringExecution" . }}
{{- end }}
{{- end }}
{{- if $node }}{{ $_ := set $affinity "nodeAffinity" $node }}{{ end }}
{{- if $affinity }}{{ toYaml $affinity }}{{ end }}
{{- end }}
