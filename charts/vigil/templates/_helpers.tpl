{{/*
Names, labels and image references shared by every template of the chart.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else "<release>-<name>", or just the
release name when it already contains the chart name (`helm install vigil ...` -> "vigil").
*/}}
{{- define "vigil.fullname" -}}
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

{{/* "vigil-0.1.0", for the helm.sh/chart label. */}}
{{- define "vigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the chart carries. */}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ include "vigil.chart" . }}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the operator's pods (never change them on upgrade). */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
A full image reference "<images.registry>/<name>:<tag>", the tag defaulting to appVersion
(the same composition the operator uses for the images it starts):
  include "vigil.image" (dict "name" .Values.images.operator "root" .)
*/}}
{{- define "vigil.image" -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.images.registry) .name (include "vigil.imageTag" .root) }}
{{- end }}

{{- define "vigil.imageTag" -}}
{{- .Values.images.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Namespaces the operator serves when not cluster-wide, as a JSON list: watchNamespaces,
else the release namespace. */}}
{{- define "vigil.namespaces" -}}
{{- if .Values.operator.watchNamespaces }}{{ .Values.operator.watchNamespaces | toJson }}
{{- else }}{{ list .Release.Namespace | toJson }}{{ end }}
{{- end }}

{{/* Name of the kopf peering object(s) the operator's replicas share. */}}
{{- define "vigil.peeringName" -}}
{{- include "vigil.fullname" . }}-operator
{{- end }}

{{/* Namespace of the dashboard ConfigMaps. */}}
{{- define "vigil.dashboardsNamespace" -}}
{{- default .Release.Namespace .Values.dashboards.namespace }}
{{- end }}

{{/*
The NATS server of JetStream monitors without spec.transport.url (the operator's
VIGIL_OPERATOR_NATS_URL): the chart's own (nats.enabled; its Service, named by the subchart's
"nats.fullname"), else transport.natsUrl, else empty. Both set is an error.
*/}}
{{- define "vigil.natsUrl" -}}
{{- if .Values.nats.enabled }}
{{- if .Values.transport.natsUrl }}
{{- fail "set transport.natsUrl (an existing NATS) or nats.enabled (the chart's own), not both" }}
{{- end }}
{{- include "nats.clientUrl" (dict "Release" .Release "Values" .Values.nats) }}
{{- else }}
{{- .Values.transport.natsUrl }}
{{- end }}
{{- end }}
