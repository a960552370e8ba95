{{/*
Names and labels of the vendored NATS subchart. "nats.fullname" and "nats.clientUrl" take a
context with .Release and .Values (this chart's values), so the parent chart computes the same
name from its `.Values.nats` (vigil.natsUrl in the parent's _helpers.tpl).
*/}}

{{/* "<release>-nats", or fullnameOverride. */}}
{{- define "nats.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-nats" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The URL clients in the cluster reach this server at. */}}
{{- define "nats.clientUrl" -}}
{{- printf "nats://%s.%s.svc:%d" (include "nats.fullname" .) .Release.Namespace (int .Values.port) }}
{{- end }}

{{- define "nats.selectorLabels" -}}
app.kubernetes.io/name: nats
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nats.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "nats.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/component: nats
{{- end }}

{{- define "nats.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default (printf "%s-alpine" .Chart.AppVersion)) }}
{{- end }}

{{/* Where the configuration and the JetStream store are mounted in the container. */}}
{{- define "nats.configDir" -}}/etc/nats{{- end }}
{{- define "nats.dataDir" -}}/data{{- end }}
