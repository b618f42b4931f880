{{/* SPDX-License-Identifier: Apache-2.0 */}}
{{- define "otel-kubeskoop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "otel-kubeskoop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "otel-kubeskoop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "otel-kubeskoop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "otel-kubeskoop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "otel-kubeskoop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: node-agent
{{- end -}}

{{- define "otel-kubeskoop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "otel-kubeskoop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "otel-kubeskoop.priorityClassName" -}}
{{- if .Values.priorityClass.name -}}
{{- .Values.priorityClass.name -}}
{{- else if .Values.priorityClass.create -}}
{{- include "otel-kubeskoop.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* The metrics port: the port of config.address (or of the deprecated config.port). */}}
{{- define "otel-kubeskoop.port" -}}
{{- if .Values.config.address -}}
{{- splitList ":" (toString .Values.config.address) | last -}}
{{- else -}}
{{- default 9102 .Values.config.port -}}
{{- end -}}
{{- end -}}

{{/* "true" when the config lists a probe of pod scope (fd, io), which needs the host's pid
namespace (see values.yaml, hostPID). tests/deploy/test_chart.py checks the list against the
probe registry. */}}
{{- define "otel-kubeskoop.hostPID" -}}
{{- if eq (toString .Values.hostPID) "auto" -}}
{{- $podScope := list "fd" "io" -}}
{{- $found := false -}}
{{- range (dig "metrics" "probes" list .Values.config) -}}
{{- if has .name $podScope }}{{ $found = true }}{{ end -}}
{{- end -}}
{{- $found -}}
{{- else -}}
{{- .Values.hostPID -}}
{{- end -}}
{{- end -}}
