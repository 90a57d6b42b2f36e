{{- define "protonn.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object names are this plus a suffix (-node, -coordinator): at most 52 characters, so
     that the StatefulSet's pod names and its controller-revision-hash label stay within 63. */}}
{{- define "protonn.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "protonn.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "protonn.selectorLabels" -}}
app.kubernetes.io/name: {{ include "protonn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "protonn.labels" -}}
{{ include "protonn.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* A digest pins the image (the tag is then only for people reading it). */}}
{{- define "protonn.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}{{ with .Values.image.tag }}:{{ . }}{{ end }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* Labels of every pod: the selector's, the component's, then the user's podLabels. */}}
{{- define "protonn.podLabels" -}}
{{ include "protonn.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod spec fields shared by the node and the coordinator (context: root, values of the
     component). */}}
{{- define "protonn.podCommon" -}}
{{- with .root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "protonn.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "protonn.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{/* Non-root, read-only root file system, no privileges: every container of the chart. */}}
{{- define "protonn.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "protonn.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The tokens, from existing Secrets only. */}}
{{- define "protonn.tokenEnv" -}}
- name: DISCORD_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.discord.tokenSecret.name }}
      key: {{ .Values.discord.tokenSecret.key }}
{{- if eq .Values.mode "cluster" }}
- name: PROTONN_CLUSTER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.clusterToken.secret.name }}
      key: {{ .Values.clusterToken.secret.key }}
{{- end }}
- name: RUST_LOG
  value: {{ .Values.logging.level | quote }}
- name: PROTONN_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
{{- end -}}

{{/* Operator credentials, for coordinators only: nodes never hold them. */}}
{{- define "protonn.operatorTokenEnv" -}}
- name: PROTONN_OPERATOR_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.operatorToken.secret.name }}
      key: {{ .Values.operatorToken.secret.key }}
{{- end -}}

{{/* Live on /healthz, ready on /readyz; timings from .Values.probes. */}}
{{- define "protonn.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: ops}
  {{- toYaml .Values.probes.startup | nindent 2 }}
livenessProbe:
  httpGet: {path: /healthz, port: ops}
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet: {path: /readyz, port: ops}
  {{- toYaml .Values.probes.readiness | nindent 2 }}
{{- end -}}

{{/* The user's extra environment, volumes and mounts (TLS files, say). */}}
{{- define "protonn.extraEnv" -}}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- define "protonn.extraVolumeMounts" -}}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- define "protonn.extraVolumes" -}}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A Prometheus duration of values.schema.json (`500ms`, `30s`, `1m`, `1h`) in milliseconds. */}}
{{- define "protonn.milliseconds" -}}
{{- $n := regexFind "^[0-9]+" . | int64 -}}
{{- $unit := regexFind "[a-z]+$" . -}}
{{- mul $n (get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit) -}}
{{- end -}}
