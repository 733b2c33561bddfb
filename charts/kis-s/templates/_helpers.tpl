{{/* The chart's name (nameOverride wins). */}}
{{- define "kis-s.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: fullnameOverride, else the release name, with the chart name appended unless the release name contains it. */}}
{{- define "kis-s.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kis-s.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kis-s.labels" -}}
helm.sh/chart: {{ include "kis-s.chart" . }}
app.kubernetes.io/name: {{ include "kis-s.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kis-s
{{- end }}

{{/* Selector of the controller's pods. */}}
{{- define "kis-s.selector" -}}
app.kubernetes.io/name: {{ include "kis-s.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The stub Deployment's name (also its InferenceAutoscaler's and Service's). */}}
{{- define "kis-s.stubName" -}}
{{- default (printf "%s-stub" (include "kis-s.fullname" .)) .Values.stub.name }}
{{- end }}

{{- define "kis-s.stubSelector" -}}
app.kubernetes.io/name: {{ include "kis-s.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: stub
{{- end }}

{{/* The controller's ServiceAccount: the chart's own, or (create=false) an existing one that must be named. */}}
{{- define "kis-s.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kis-s.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: give the name of an existing ServiceAccount when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag (tag defaults to the chart's appVersion), or repository@digest. */}}
{{- define "kis-s.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the controller and the stub. */}}
{{- define "kis-s.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{- define "kis-s.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "kis-s.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Refuse values that would render a broken installation. */}}
{{- define "kis-s.validate" -}}
{{- if and (gt (int .Values.controller.replicas) 1) (not .Values.controller.leaderElection) }}
{{- fail (printf "controller.replicas=%d needs controller.leaderElection=true: without it every replica would scale the targets" (int .Values.controller.replicas)) }}
{{- end }}
{{- end }}

{{- define "kis-s.pipelineName" -}}
{{- default (printf "%s-pipeline" (include "kis-s.fullname" .)) .Values.pipeline.name }}
{{- end }}
