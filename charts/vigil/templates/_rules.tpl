{{/*
Vigil's alert rules: the one source of truth. templates/prometheusrule.yaml puts them in a
PrometheusRule; alerts/vigil-rules.yaml is the same groups rendered with the default values
(alerts/render.py), for Prometheus servers configured from files and for `promtool test
rules` (tests/rules/). tests/test_rules.py checks the file is up to date.

Prometheus' own template syntax in annotations is kept away from Helm by raw strings:
{{` {{ $labels.monitor }} `}} renders as {{ $labels.monitor }}.
*/}}
{{- define "vigil.ruleGroups" -}}
{{- $r := .Values.monitoring.prometheusRule }}
{{- $a := $r.alerts }}
{{- $extra := $r.additionalLabels }}
- name: vigil.monitors
  rules:
  {{- with $a.driftDetected }}
  {{- if .enabled }}
  - alert: VigilDriftDetected
    expr: max by (namespace, monitor) (vigil_drift_detected) == 1
    for: {{ .for }}
    labels:
      severity: {{ .severity }}
      {{- with $extra }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{ `Data drift detected for monitor {{ $labels.namespace }}/{{ $labels.monitor }}` | quote }}
      description: >-
        {{`The drift detector of ModelMonitor {{ $labels.monitor }} (namespace {{ $labels.namespace }})
        rejected the reference distribution in its last window: at least one feature's KS
        (or chi-squared) test is below the corrected p-value threshold of the monitor.`}}
      hint: >-
        {{`See which features drifted: kubectl get modelmonitor {{ $labels.monitor }} -n {{ $labels.namespace }}
        -o jsonpath='{.status.drift}', or the per-feature p-values on the "Vigil / Monitor"
        dashboard. Look for an upstream change (schema, units, a new data source). If the
        shift is real and lasting, retrain the model and update spec.reference; the alert
        clears after the next window without drift.`}}
  {{- end }}
  {{- end }}
  {{- with $a.qualityViolations }}
  {{- if .enabled }}
  - alert: VigilQualityViolations
    expr: max by (namespace, monitor) (vigil_quality_window_violations) > 0
    for: {{ .for }}
    labels:
      severity: {{ .severity }}
      {{- with $extra }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{ `{{ $value }} data-quality violation(s) for monitor {{ $labels.namespace }}/{{ $labels.monitor }}` | quote }}
      description: >-
        {{`The quality detector of ModelMonitor {{ $labels.monitor }} (namespace {{ $labels.namespace }})
        found {{ $value }} check(s) violated in its last window: missing values, values of the wrong
        type, values outside the baseline's range, unseen categories, unknown or absent columns,
        more often than a clean stream gives.`}}
      hint: >-
        {{`See which features and checks: kubectl get modelmonitor {{ $labels.monitor }} -n {{ $labels.namespace }}
        -o jsonpath='{.status.quality}', the quality row of the "Vigil / Monitor" dashboard, or the
        reports in vigil status --history 5. Fix the sender (schema, units, a new category) or, if
        the new data is legitimate, edit constraints.json of the baseline (spec.baseline); the alert
        clears after the next clean window.`}}
  {{- end }}
  {{- end }}
  {{- with $a.outlierRateHigh }}
  {{- if .enabled }}
  - alert: VigilOutlierRateHigh
    expr: |-
      (
        sum by (namespace, monitor) (rate(vigil_outlier_outliers_total[{{ .window }}]))
      /
        sum by (namespace, monitor) (rate(vigil_outlier_instances_total[{{ .window }}]))
      ) > {{ .threshold }}
    for: {{ .for }}
    labels:
      severity: {{ .severity }}
      {{- with $extra }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{ `Outlier rate of {{ $value | humanizePercentage }} for monitor {{ $labels.namespace }}/{{ $labels.monitor }}` | quote }}
      description: >-
        {{`{{ $value | humanizePercentage }} of the instances sent to ModelMonitor
        {{ $labels.monitor }} (namespace {{ $labels.namespace }}) over the last`}} {{ .window }}
        {{`were outliers according to its VAE detector`}} (threshold {{ .threshold }}).
      hint: >-
        {{`Open the "Vigil / Monitor" dashboard (outlier score distribution against the
        threshold). A few clients or one feature sending unusual values points at bad input;
        a broad rise of scores usually comes with drift. Inspect recent outlier replies
        (dev.vigil.detection.outlier events) and, if the new data is legitimate, retrain
        the outlier detector (vigil train) on fresh reference data.`}}
  {{- end }}
  {{- end }}
  {{- with $a.accuracyLow }}
  {{- if .enabled }}
  - alert: VigilAccuracyLow
    expr: |-
      min by (namespace, monitor) (vigil_metrics_accuracy{window="{{ .metricsWindow }}"}) < {{ .threshold }}
      and on (namespace, monitor)
      sum by (namespace, monitor) (vigil_metrics_feedback_total) >= {{ .minFeedback }}
    for: {{ .for }}
    labels:
      severity: {{ .severity }}
      {{- with $extra }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{ `Accuracy {{ $value | humanizePercentage }} for monitor {{ $labels.namespace }}/{{ $labels.monitor }}` | quote }}
      description: >-
        {{`Accuracy of the model behind ModelMonitor {{ $labels.monitor }} (namespace
        {{ $labels.namespace }})`}} over its {{ .metricsWindow }} window{{`, measured from ground-truth feedback, is {{ $value | humanizePercentage }},`}}
        below the threshold of {{ .threshold }}.
      hint: >-
        {{`Check per-class precision and recall on the "Vigil / Monitor" dashboard to see
        which classes degrade, and whether drift was detected at the same time. Make sure
        feedback is joined correctly (same inference id as the x-inference-id reply header).
        Roll back to the previous model or retrain on recent labelled data.`}}
  {{- end }}
  {{- end }}
  {{- with $a.eventsDropped }}
  {{- if .enabled }}
  - alert: VigilEventsDropped
    expr: |-
      sum by (namespace, monitor, sink, reason) (increase(vigil_logger_events_dropped_total[{{ .window }}])) > {{ .threshold }}
    for: {{ .for }}
    labels:
      severity: {{ .severity }}
      {{- with $extra }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{ `Request logger of {{ $labels.namespace }}/{{ $labels.monitor }} drops events for {{ $labels.sink }}` | quote }}
      description: >-
        {{`The request logger of ModelMonitor {{ $labels.monitor }} (namespace {{ $labels.namespace }})
        dropped {{ $value | humanize }} events for sink {{ $labels.sink }} (reason {{ $labels.reason }})
        over the last`}} {{ .window }}{{`. Inference replies are unaffected, but the detector
        behind that sink does not see all traffic.`}}
      hint: >-
        {{`Reason queue_full: the sink is slower than the traffic; scale the detector
        (spec.detectors.<name>.replicas) or raise spec.logger.queueSize. Other reasons: the
        sink is down or erroring; check its pods (kubectl get pods -n {{ $labels.namespace }}
        -l vigil.dev/monitor={{ $labels.monitor }}) and its logs.`}}
  {{- end }}
  {{- end }}
  {{- with $a.componentDown }}
  {{- if .enabled }}
  - alert: VigilComponentDown
    expr: up{ {{- $r.componentSelector -}} } == 0
    for: {{ .for }}
    labels:
      severity: {{ .severity }}
      {{- with $extra }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{ `Vigil component {{ $labels.component }} of {{ $labels.namespace }}/{{ $labels.monitor }} is down` | quote }}
      description: >-
        {{`Prometheus cannot scrape {{ $labels.instance }}, the {{ $labels.component }} component of
        ModelMonitor {{ $labels.monitor }} (namespace {{ $labels.namespace }}).`}}
      hint: >-
        {{`kubectl get pods -n {{ $labels.namespace }} -l vigil.dev/monitor={{ $labels.monitor }};
        kubectl describe the pod that is not Running/Ready and read its logs
        (kubectl logs ... --previous after a crash). kubectl get modelmonitor {{ $labels.monitor }}
        -n {{ $labels.namespace }} shows the phase and the operator's message.`}}
  {{- end }}
  {{- end }}
  {{- with $a.detectorNotReady }}
  {{- if .enabled }}
  - alert: VigilDetectorNotReady
    expr: max by (namespace, monitor, component, instance) (vigil_detector_ready) == 0
    for: {{ .for }}
    labels:
      severity: {{ .severity }}
      {{- with $extra }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{ `Detector {{ $labels.component }} of {{ $labels.namespace }}/{{ $labels.monitor }} is not ready` | quote }}
      description: >-
        {{`The {{ $labels.component }} detector of ModelMonitor {{ $labels.monitor }} (namespace
        {{ $labels.namespace }}) at {{ $labels.instance }} runs but has not loaded its artifact,
        so it rejects every event (reason not_ready).`}}
      hint: >-
        {{`GET /readyz and /status on the detector show the load error. Usual causes: the
        artifact at storageUri is missing or was trained for another schema, or the training
        Job failed (kubectl get jobs -n {{ $labels.namespace }}). Fix the artifact or delete
        storageUri to let Vigil train it.`}}
  {{- end }}
  {{- end }}
- name: vigil.operator
  rules:
  {{- with $a.operatorErrors }}
  {{- if .enabled }}
  - alert: VigilOperatorReconcileErrors
    expr: sum by (namespace, job) (increase(vigil_operator_errors_total[{{ .window }}])) > 0
    for: {{ .for }}
    labels:
      severity: {{ .severity }}
      {{- with $extra }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      summary: {{ `The Vigil operator fails to reconcile monitors` | quote }}
      description: >-
        {{`The Vigil operator (job {{ $labels.job }}) reported {{ $value | humanize }} reconcile
        errors over the last`}} {{ .window }}{{`; monitors may not reflect their spec.`}}
      hint: >-
        {{`kubectl logs deploy/<release>-vigil-operator -n <operator namespace>; kubectl get
        modelmonitors -A shows monitors in phase Failed with the field at fault. Errors from
        the API server (403) mean RBAC is missing a rule: compare the chart's Role with
        operator/vigil_operator/rbac.yaml.`}}
  {{- end }}
  {{- end }}
{{- end }}
