{{/*
The alerts, as a Prometheus rule file's body (tests/alerts/ runs `promtool test rules` on exactly
this, rendered by helm). Critical means "the cluster's NamespaceOffloading writes are refused"
(the webhooks fail closed) and nothing else; the rest are warnings. Failures alert on a share of
the calls sustained for minutes, never on one failed call. Every alert links its runbook,
docs/runbooks/<alert>.md, and the API server's metrics are matched by the webhook names this
release registers.
*/}}
{{- define "ow.alertRules" -}}
{{- $sel := default (include "ow.metricsSelector" .) .Values.metrics.prometheusRule.selector }}
{{- $hooks := printf "name=~%q" (include "ow.webhookNamesRegex" .) }}
{{- $failed := printf "%s,error_type=~\"calling_webhook_error|apiserver_internal_error\"" $hooks }}
{{- $r := .Values.metrics.prometheusRule -}}
groups:
- name: offloading-webhook
  rules:
  - alert: OffloadingWebhookCallsFailing
    expr: |-
      (
        sum by (name) (rate(apiserver_admission_webhook_rejection_count{ {{- $failed }}}[10m]))
        / sum by (name) (rate(apiserver_admission_webhook_request_total{ {{- $hooks }}}[10m]))
      ) > {{ $r.failedCallsRatio }}
      and sum by (name) (increase(apiserver_admission_webhook_rejection_count{ {{- $failed }}}[10m])) >= {{ $r.failedCallsMin }}
    for: 5m
    labels:
      severity: critical
    annotations:
      summary: >-
        The API server cannot call webhook {{`{{ $labels.name }}`}}; NamespaceOffloading writes are refused
      description: >-
        {{`{{ $value | humanizePercentage }}`}} of the calls to {{`{{ $labels.name }}`}} failed over 10 minutes. The webhook fails closed, so each of those creates and updates of a NamespaceOffloading was refused. Check the pods, the Service's endpoints and the caBundle of the webhook configurations in namespace {{ .Release.Namespace }}.
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookCallsFailing.md
  - alert: OffloadingWebhookFailOpen
    expr: |-
      (
        sum by (name) (rate(apiserver_admission_webhook_fail_open_count{ {{- $hooks }}}[10m]))
        / sum by (name) (rate(apiserver_admission_webhook_request_total{ {{- $hooks }}}[10m]))
      ) > {{ $r.failedCallsRatio }}
      and sum by (name) (increase(apiserver_admission_webhook_fail_open_count{ {{- $hooks }}}[10m])) >= {{ $r.failedCallsMin }}
    for: 5m
    labels:
      severity: warning
    annotations:
      summary: >-
        Writes pass webhook {{`{{ $labels.name }}`}} unreviewed (failurePolicy Ignore)
      description: >-
        {{`{{ $value | humanizePercentage }}`}} of the calls to {{`{{ $labels.name }}`}} failed over 10 minutes and the API server let those writes through unreviewed: a NamespaceOffloading Liqo will fail on may have been admitted. The audit log marks each with the annotation failed-open.validating.webhook.admission.k8s.io (or failed-open.mutating).
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookFailOpen.md
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
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookSlow.md
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
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookNoReadyReplica.md
  - alert: OffloadingWebhookDown
    expr: absent(up{ {{- $sel }}} == 1)
    for: 5m
    labels:
      severity: warning
    annotations:
      summary: >-
        No offloading-webhook replica is scraped
      description: >-
        Prometheus reaches no replica of {{ .Release.Namespace }}/{{ include "ow.fullname" . }} ({{ $sel }}). Whether writes are refused is what OffloadingWebhookNoReadyReplica and OffloadingWebhookCallsFailing say; this says the webhook is not watched.
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookDown.md
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
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookCertificateExpiringSoon.md
  - alert: OffloadingWebhookCertificateReloadFailing
    expr: increase(offloading_webhook_certificate_reload_failures_total{ {{- $sel }}}[15m]) > 0
    labels:
      severity: warning
    annotations:
      summary: >-
        Pod {{`{{ $labels.pod }}`}} cannot load the renewed certificate
      description: >-
        The mounted certificate changed but does not load (the last good one keeps serving until it expires). Read the pod's log for the reason.
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookCertificateReloadFailing.md
  - alert: OffloadingWebhookReconcileErrors
    expr: |-
      sum(rate(offloading_webhook_reconciles_total{ {{- $sel }},result="error"}[10m]))
      / sum(rate(offloading_webhook_reconciles_total{ {{- $sel }}}[10m])) > {{ $r.reconcileErrorsRatio }}
    for: 15m
    labels:
      severity: warning
    annotations:
      summary: >-
        {{`{{ $value | humanizePercentage }}`}} of the reconciles fail
      description: >-
        More than {{ $r.reconcileErrorsRatio }} of the NamespaceOffloading reconciles have been failing for 15 minutes; NamespaceMaps and status go stale. The active replica's log and the NamespaceOffloadings' Events say why; `offloading-webhook diagnose -n NAMESPACE` walks one namespace.
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookReconcileErrors.md
  - alert: OffloadingWebhookReconcileDown
    expr: min by (namespace, pod) (offloading_webhook_reconcile_up{ {{- $sel }}}) == 0
    for: 10m
    labels:
      severity: warning
    annotations:
      summary: >-
        Pod {{`{{ $labels.pod }}`}} reports a fault in the reconcile loop
      description: >-
        offloading_webhook_reconcile_up has been 0 on {{`{{ $labels.pod }}`}} for 10 minutes: its Lease, a watch or a write of the loop is refused (RBAC, a missing namespace or CRD). The webhook still answers reviews; NamespaceMaps and status go stale. The pod's log says what and how to fix it, once.
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookReconcileDown.md
  {{- if .Values.reconcile }}
  - alert: OffloadingWebhookNoLeader
    # offloading_webhook_leader is 1 on the replica that runs the loop and 0 elsewhere, also where
    # no replica ever runs it (Liqo v1.x, whose own controllers do the work): so the loop counts as
    # enabled once some replica led within the last week. A loop that never got a leader shows as
    # OffloadingWebhookReconcileDown (the Lease's fault).
    expr: |-
      sum(offloading_webhook_leader{ {{- $sel }}}) == 0
      and sum(max_over_time(offloading_webhook_leader{ {{- $sel }}}[7d])) > 0
    for: 5m
    labels:
      severity: warning
    annotations:
      summary: >-
        No offloading-webhook replica runs the reconcile loop
      description: >-
        None of the replicas of {{ .Release.Namespace }}/{{ include "ow.fullname" . }} has held the Lease for 5 minutes, so no one maintains NamespaceMaps, status and the Namespace label; new offloadings stay pending. The webhook still answers reviews.
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookNoLeader.md
  {{- end }}
  - alert: OffloadingWebhookUndecodableObjects
    expr: sum by (kind) (increase(offloading_webhook_decode_failures_total{ {{- $sel }}}[30m])) > 0
    labels:
      severity: warning
    annotations:
      summary: >-
        Stored {{`{{ $labels.kind }}`}} objects do not decode and are left alone
      description: >-
        The reconcile loop skips {{`{{ $labels.kind }}`}} objects it cannot decode (another Liqo version's fields, or an object written around the webhook). The replica's log names the object and the field.
      runbook_url: {{ $r.runbookBaseUrl }}/OffloadingWebhookUndecodableObjects.md
{{- end }}
