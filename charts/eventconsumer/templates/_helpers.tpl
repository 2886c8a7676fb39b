{{/*
Chart name, truncated to 63 characters (the DNS label limit of Kubernetes names).
*/}}
{{- define "eventconsumer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every resource, at most 63 characters (a Service name is a DNS label).
Components with a suffix shorten it further, see eventconsumer.kafkaFullname and
eventconsumer.gatewayFullname.
*/}}
{{- define "eventconsumer.fullname" -}}
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

{{- define "eventconsumer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "eventconsumer.labels" -}}
helm.sh/chart: {{ include "eventconsumer.chart" . }}
{{ include "eventconsumer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eventconsumer
{{- end }}

{{/*
Selector labels: immutable on Deployments and StatefulSets, so nothing version-dependent.
Each workload adds app.kubernetes.io/component.
*/}}
{{- define "eventconsumer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventconsumer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "eventconsumer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eventconsumer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the leader-election Lease: the operator Deployment's name, one Lease per release.
*/}}
{{- define "eventconsumer.leaseName" -}}
{{- printf "%s-operator" (include "eventconsumer.fullname" .) }}
{{- end }}

{{- define "eventconsumer.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) }}
{{- end }}

{{/*
The worker image: what the operator runs for every EventConsumer without spec.image, and
what the gateway runs.
*/}}
{{- define "eventconsumer.workerImage" -}}
{{- printf "%s:%s" .Values.worker.image.repository (default .Chart.AppVersion .Values.worker.image.tag) }}
{{- end }}

{{/*
The Kafka StatefulSet and Service name. The StatefulSet's controller-revision-hash label is
"<name>-<10-character hash>" and a label value holds at most 63 characters, so the prefix
is cut to 46 (46 + "-kafka" + "-" + 10 = 63).
*/}}
{{- define "eventconsumer.kafkaFullname" -}}
{{- printf "%s-kafka" (include "eventconsumer.fullname" . | trunc 46 | trimSuffix "-") }}
{{- end }}

{{/*
The gateway Deployment and Service name: 55 + "-gateway" = 63, the Service name limit.
*/}}
{{- define "eventconsumer.gatewayFullname" -}}
{{- printf "%s-gateway" (include "eventconsumer.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
Bootstrap address of the chart's Kafka: the headless Service name, fully qualified so it
works from any namespace (EventConsumers usually live elsewhere).
*/}}
{{- define "eventconsumer.kafkaBootstrap" -}}
{{- printf "%s.%s.svc:9092" (include "eventconsumer.kafkaFullname" .) .Release.Namespace }}
{{- end }}

{{- define "eventconsumer.kafkaSecuredBootstrap" -}}
{{- printf "%s.%s.svc:9094" (include "eventconsumer.kafkaFullname" .) .Release.Namespace }}
{{- end }}

{{- define "eventconsumer.gatewayBootstrap" -}}
{{- if .Values.gateway.bootstrapServers }}
{{- .Values.gateway.bootstrapServers }}
{{- else if .Values.kafka.enabled }}
{{- include "eventconsumer.kafkaBootstrap" . }}
{{- else }}
{{- fail "gateway.enabled needs gateway.bootstrapServers, or kafka.enabled for the chart's own Kafka" }}
{{- end }}
{{- end }}

{{/*
The restricted Pod Security Standard for a container
(https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted), plus a
read-only root filesystem. Argument: the numeric UID the image runs as.
*/}}
{{- define "eventconsumer.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
