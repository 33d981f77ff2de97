{{/*
The alerts, as a Prometheus rule file's body (tests/alerts/ runs `promtool test rules` on exactly
this, rendered by helm). The webhooks fail closed, so "the API server cannot call us" is critical:
every NamespaceOffloading write is refused meanwhile.
*/}}
{{- define "ow.alertRules" -}}
{{- $sel := default (include "ow.metricsSelector" .) .Values.metrics.prometheusRule.selector }}
{{- $hooks := `name=~"nsoff[.](validate|mutate)[.]liqo[.]io"` }}
{{- $r := .Values.metrics.prometheusRule -}}
groups:
- name: offloading-webhook
  rules:
  - alert: OffloadingWebhookCallsFailing
    expr: sum by (name) (rate(apiserver_admission_webhook_rejection_count{ {{- $hooks }},error_type=~"calling_webhook_error|apiserver_internal_error"}[5m])) > 0
    for: 2m
    labels:
      severity: critical
    annotations:
      summary: >-
        The API server cannot call webhook {{`{{ $labels.name }}`}}; NamespaceOffloading writes are refused
      description: >-
        Calls to {{`{{ $labels.name }}`}} fail ({{`{{ printf "%.2f" $value }}`}} a second). The webhook fails closed, so every create and update of a NamespaceOffloading is refused until it answers again. Check the pods, the Service's endpoints and the caBundle of the webhook configurations in namespace {{ .Release.Namespace }}.
  - alert: OffloadingWebhookSlow
    expr: histogram_quantile(0.99, sum by (name, le) (rate(apiserver_admission_webhook_admission_duration_seconds_bucket{ {{- $hooks }}}[5m]))) > {{ $r.latencyThresholdSeconds }}
    for: 10m
    labels:
      severity: warning
    annotations:
      summary: >-
        Webhook {{`{{ $labels.name }}`}} answers slowly (p99 {{`{{ $value | humanizeDuration }}`}})
      description: >-
        The API server waits more than {{ $r.latencyThresholdSeconds }}s for 1% of the calls to {{`{{ $labels.name }}`}}; at {{ .Values.webhooks.timeoutSeconds }}s they fail and the write is refused. Check CPU throttling and the network path to the pods.
  - alert: OffloadingWebhookNoReadyReplica
    expr: sum(kube_deployment_status_replicas_available{namespace="{{ .Release.Namespace }}",deployment="{{ include "ow.fullname" . }}"}) < {{ $r.minAvailableReplicas }}
    for: 2m
    labels:
      severity: critical
    annotations:
      summary: >-
        {{`{{ $value }}`}} offloading-webhook replicas available, fewer than {{ $r.minAvailableReplicas }}
      description: >-
        Deployment {{ .Release.Namespace }}/{{ include "ow.fullname" . }} has fewer than {{ $r.minAvailableReplicas }} available replicas; with none, every NamespaceOffloading write is refused (the webhooks fail closed).
  - alert: OffloadingWebhookDown
    expr: absent(up{ {{- $sel }}} == 1)
    for: 5m
    labels:
      severity: critical
    annotations:
      summary: >-
        No offloading-webhook replica is scraped
      description: >-
        Prometheus reaches no replica of {{ .Release.Namespace }}/{{ include "ow.fullname" . }} ({{ $sel }}).
  - alert: OffloadingWebhookCertificateExpiringSoon
    expr: min by (namespace, pod) (offloading_webhook_certificate_expiry_timestamp_seconds{ {{- $sel }}}) - time() < {{ $r.certificateExpiryDays }} * 86400
    for: 10m
    labels:
      severity: warning
    annotations:
      summary: >-
        The webhook's serving certificate expires in {{`{{ $value | humanizeDuration }}`}}
      description: >-
        Pod {{`{{ $labels.pod }}`}} serves a certificate that expires within {{ $r.certificateExpiryDays }} days; once expired the API server refuses to call the webhook and every NamespaceOffloading write fails. {{ if eq .Values.certificate.source "managed" }}The replicas renew Secret {{ include "ow.managedSecretName" . }} themselves once two thirds of its lifetime are gone: read their logs for why they did not.{{ else }}Renew Secret {{ include "ow.tlsSecretName" . }} ({{ .Values.certificate.source }}).{{ end }}
  - alert: OffloadingWebhookCertificateReloadFailing
    expr: increase(offloading_webhook_certificate_reload_failures_total{ {{- $sel }}}[15m]) > 0
    labels:
      severity: warning
    annotations:
      summary: >-
        Pod {{`{{ $labels.pod }}`}} cannot load the renewed certificate
      description: >-
        The mounted certificate changed but does not load (the last good one keeps serving until it expires). Read the pod's log for the reason.
  - alert: OffloadingWebhookReconcileErrors
    expr: sum(rate(offloading_webhook_reconciles_total{ {{- $sel }},result="error"}[10m])) > 0
    for: 15m
    labels:
      severity: warning
    annotations:
      summary: >-
        The reconcile loop keeps failing ({{`{{ printf "%.2f" $value }}`}} errors a second)
      description: >-
        NamespaceOffloading reconciles have been failing for 15 minutes; NamespaceMaps and status go stale. The active replica's log and the NamespaceOffloadings' Events say why; `offloading-webhook diagnose -n NAMESPACE` walks one namespace.
  - alert: OffloadingWebhookUndecodableObjects
    expr: sum by (kind) (increase(offloading_webhook_decode_failures_total{ {{- $sel }}}[30m])) > 0
    labels:
      severity: warning
    annotations:
      summary: >-
        Stored {{`{{ $labels.kind }}`}} objects do not decode and are left alone
      description: >-
        The reconcile loop skips {{`{{ $labels.kind }}`}} objects it cannot decode (another Liqo version's fields, or an object written around the webhook). The replica's log names the object and the field.
{{- end }}
