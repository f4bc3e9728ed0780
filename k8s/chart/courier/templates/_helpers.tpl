{{/* The chart's name: app.kubernetes.io/name. */}}
{{- define "courier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of courier's resources: the release name when it contains the chart's
(release `courier`: `courier`, as in the overlays), else RELEASE-NAME. */}}
{{- define "courier.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "courier.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every resource; ARGS: (dict "root" $ "name" NAME "component" COMPONENT). */}}
{{- define "courier.labelsOf" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: courier
{{ include "courier.selectorOf" . }}
{{- end }}

{{/* Selector labels; ARGS as courier.labelsOf. */}}
{{- define "courier.selectorOf" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* courier's labels (its pods: component `server`). */}}
{{- define "courier.labels" -}}
{{ include "courier.labelsOf" (dict "root" . "name" (include "courier.name" .)) }}
{{- end }}

{{- define "courier.selectorLabels" -}}
{{ include "courier.selectorOf" (dict "root" . "name" (include "courier.name" .) "component" "server") }}
{{- end }}

{{- define "courier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "courier.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the ServiceAccount to use when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* COURIER_BUS: bus.url, or the in-cluster NATS. */}}
{{- define "courier.busURL" -}}
{{- if .Values.bus.url }}
{{- .Values.bus.url }}
{{- else if .Values.nats.enabled }}
{{- printf "nats://%s:4222" .Values.nats.name }}
{{- end }}
{{- end }}

{{/* COURIER_STORAGE when media are in a bucket: s3.url, or the in-cluster MinIO. */}}
{{- define "courier.s3URL" -}}
{{- if .Values.s3.url }}
{{- .Values.s3.url }}
{{- else if .Values.minio.enabled }}
{{- printf "s3://%s/media" .Values.minio.bucket }}
{{- end }}
{{- end }}

{{/* AWS_ENDPOINT: s3.endpoint, or the in-cluster MinIO. */}}
{{- define "courier.s3Endpoint" -}}
{{- if .Values.s3.endpoint }}
{{- .Values.s3.endpoint }}
{{- else if .Values.minio.enabled }}
{{- printf "http://%s:9000" .Values.minio.name }}
{{- end }}
{{- end }}

{{/* The Secret with courier's static S3 keys, if any: s3.existingSecret, or MinIO's. */}}
{{- define "courier.s3Secret" -}}
{{- if .Values.s3.existingSecret }}
{{- .Values.s3.existingSecret }}
{{- else if .Values.minio.enabled }}
{{- .Values.minio.name }}
{{- end }}
{{- end }}

{{/* The pods the Deployment runs at first: its replicas, or the autoscaler's minimum. */}}
{{- define "courier.replicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/* Refuses values that would deploy something broken, with the reason. */}}
{{- define "courier.validate" -}}
{{- $replicated := or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}
{{- if $replicated }}
{{- if not (include "courier.busURL" .) }}
{{- fail "several replicas (replicaCount > 1 or autoscaling.enabled) need a bus: set bus.url or nats.enabled, or they will not see each other's users" }}
{{- end }}
{{- if not (include "courier.s3URL" .) }}
{{- fail "several replicas (replicaCount > 1 or autoscaling.enabled) need media on S3: set s3.url or minio.enabled, or each keeps its own media" }}
{{- end }}
{{- if and .Values.persistence.enabled (has "ReadWriteOnce" .Values.persistence.accessModes) }}
{{- fail "several replicas cannot share a ReadWriteOnce claim: set persistence.enabled=false (with a bus and S3 nothing in the data folder outlives a pod)" }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.minReplicas) 2) }}
{{- fail "autoscaling.minReplicas must be 2 or more" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.tls.enabled .Values.tls.clientCA (eq .Values.tls.probes "grpc") }}
{{- fail "tls.probes=grpc cannot be used with tls.clientCA: the kubelet's gRPC probe has no client certificate (use tls.probes=tcp)" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName, a kubernetes.io/tls Secret (e.g. cert-manager's)" }}
{{- end }}
{{- $bus := include "courier.busURL" . }}
{{- if and $bus (not (hasPrefix "nats://" $bus)) }}
{{- fail (printf "bus.url %q is not a nats:// URL" $bus) }}
{{- end }}
{{- $s3 := include "courier.s3URL" . }}
{{- if and $s3 (not (hasPrefix "s3://" $s3)) }}
{{- fail (printf "s3.url %q is not an s3://BUCKET/PREFIX URL" $s3) }}
{{- end }}
{{- range $name := list "COURIER_LISTEN" "COURIER_METRICS_LISTEN" "COURIER_DATA_DIR" "COURIER_SHUTDOWN_GRACE" "COURIER_JWT_SECRET" "COURIER_BUS" "COURIER_STORAGE" "COURIER_TLS_CERT" "COURIER_TLS_KEY" "COURIER_TLS_CLIENT_CA" }}
{{- if hasKey $.Values.server.env $name }}
{{- fail (printf "server.env.%s: set it through its own value (server.*, jwt, bus, s3, tls), which the ports, probes and volumes follow" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The ConfigMap's variables, as YAML; the pod template's checksum hashes them. */}}
{{- define "courier.env" -}}
{{- $env := dict
  "COURIER_LISTEN" (printf "0.0.0.0:%d" (int .Values.server.grpcPort))
  "COURIER_METRICS_LISTEN" (printf "0.0.0.0:%d" (int .Values.server.metricsPort))
  "COURIER_DATA_DIR" .Values.server.dataDir
  "COURIER_SHUTDOWN_GRACE" (printf "%ds" (int .Values.server.shutdownGraceSeconds)) }}
{{- with include "courier.busURL" . }}
{{- $_ := set $env "COURIER_BUS" . }}
{{- end }}
{{- with include "courier.s3URL" . }}
{{- $_ := set $env "COURIER_STORAGE" . }}
{{- $_ := set $env "AWS_REGION" $.Values.s3.region }}
{{- with include "courier.s3Endpoint" $ }}
{{- $_ := set $env "AWS_ENDPOINT" . }}
{{- end }}
{{- if or $.Values.s3.allowHttp (and $.Values.minio.enabled (not $.Values.s3.endpoint)) }}
{{- $_ := set $env "AWS_ALLOW_HTTP" "true" }}
{{- end }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $_ := set $env "COURIER_TLS_CERT" (printf "%s/tls.crt" .Values.tls.mountPath) }}
{{- $_ := set $env "COURIER_TLS_KEY" (printf "%s/tls.key" .Values.tls.mountPath) }}
{{- if .Values.tls.clientCA }}
{{- $_ := set $env "COURIER_TLS_CLIENT_CA" (printf "%s/ca.crt" .Values.tls.mountPath) }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.server.env }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $env $name (toString $value) }}
{{- end }}
{{- end }}
{{- range $name, $value := $env }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end }}
