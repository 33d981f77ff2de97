{{/* The chart's name, and the full name every object carries. */}}
{{- define "ow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ow.fullname" -}}
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

{{- define "ow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ow.labels" -}}
{{ include "ow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "ow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ow.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret the replicas keep the managed CA and serving pair in. */}}
{{- define "ow.managedSecretName" -}}
{{- printf "%s-certificate" (include "ow.fullname" .) }}
{{- end }}

{{/* The Secret the pods mount: tls.crt and tls.key (cert-manager's, or an existing one). */}}
{{- define "ow.tlsSecretName" -}}
{{- if eq .Values.certificate.source "existingSecret" }}
{{- required "certificate.existingSecret.name is required with certificate.source=existingSecret" .Values.certificate.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "ow.fullname" .) }}
{{- end }}
{{- end }}

{{- define "ow.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.shutdown.terminationGracePeriodSeconds }}
{{- add .Values.shutdown.preStopSleepSeconds .Values.shutdown.shutdownDelaySeconds .Values.shutdown.drainSeconds 5 }}
{{- else }}
{{- .Values.shutdown.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Selector of this release's metrics series, as a ServiceMonitor labels them. */}}
{{- define "ow.metricsSelector" -}}
job="{{ include "ow.fullname" . }}",namespace="{{ .Release.Namespace }}"
{{- end }}

{{/* The webhooks' names, as registered and as the API server's metrics label them (name=...). */}}
{{- define "ow.validatingName" -}}
{{- default "validate.offloading-webhook.io" .Values.webhooks.validatingName }}
{{- end }}

{{- define "ow.mutatingName" -}}
{{- default "mutate.offloading-webhook.io" .Values.webhooks.mutatingName }}
{{- end }}

{{/* A PromQL regular expression (fully anchored, as PromQL's are) matching exactly those two names. */}}
{{- define "ow.webhookNamesRegex" -}}
{{- printf "%s|%s" (include "ow.validatingName" . | replace "." "[.]") (include "ow.mutatingName" . | replace "." "[.]") }}
{{- end }}

{{/* The three listeners need three ports. */}}
{{- define "ow.checkPorts" -}}
{{- $p := .Values.ports }}
{{- if or (eq (int $p.webhook) (int $p.probes)) (eq (int $p.webhook) (int $p.metrics)) (eq (int $p.probes) (int $p.metrics)) }}
{{- fail (printf "ports.webhook (%v), ports.probes (%v) and ports.metrics (%v) must be three different ports" $p.webhook $p.probes $p.metrics) }}
{{- end }}
{{- end }}

{{/* The webhooks' failurePolicy: Ignore where the policy refuses (validation.mode policy), so
that no write waits on the replicas. */}}
{{- define "ow.failurePolicy" -}}
{{- if eq .Values.validation.mode "policy" }}Ignore{{ else }}{{ .Values.webhooks.failurePolicy }}{{ end }}
{{- end }}
