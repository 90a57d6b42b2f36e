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
{{- if .Values.web.enabled }}
{{ include "protonn.webTokenEnv" . }}
{{- end }}
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

{{/* The dashboard's credentials: `protonn web` calls with them, nodes and coordinators accept
them (only they may change a guild). */}}
{{- define "protonn.webTokenEnv" -}}
- name: PROTONN_WEB_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.webToken.secret.name }}
      key: {{ .Values.webToken.secret.key }}
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

{{/* protonn.toml, rendered once for the ConfigMap of the pods and the migration Job's. */}}
{{- define "protonn.config" -}}
[discord]
{{- with .Values.discord.shards }}
shards = {{ int . }}
{{- end }}
{{- with .Values.discord.simulator }}
simulator = {{ . | quote }}
{{- end }}
{{- with .Values.discord.premiumSkus }}

[discord.premium_skus]
{{- range $sku, $plan := . }}
{{ $sku | quote }} = {{ $plan | quote }}
{{- end }}
{{- end }}

[storage]
{{- if eq .Values.storage.backend "scylla" }}
{{- $scylla := .Values.storage.scylla }}
# Every process opens ScyllaDB itself; the credentials come from a Secret, as environment
# variables, never from this file.
backend = "scylla"

[storage.scylla]
contact_points = [{{ range $i, $point := $scylla.contactPoints }}{{ if $i }}, {{ end }}{{ $point | quote }}{{ end }}]
keyspace = {{ $scylla.keyspace | quote }}
{{- with $scylla.localDc }}
local_dc = {{ . | quote }}
{{- end }}
replication = { {{ range $i, $dc := keys $scylla.replication | sortAlpha }}{{ if $i }}, {{ end }}{{ $dc | quote }} = {{ int (get $scylla.replication $dc) }}{{ end }} }
connection_timeout_ms = {{ int64 $scylla.connectionTimeoutMs }}
request_timeout_ms = {{ int64 $scylla.requestTimeoutMs }}
{{- with $scylla.tls.ca }}

[storage.scylla.tls]
ca = {{ . | quote }}
{{- with $scylla.tls.cert }}
cert = {{ . | quote }}
{{- end }}
{{- with $scylla.tls.key }}
key = {{ . | quote }}
{{- end }}
{{- end }}
{{- else }}
data_dir = "/data"
{{- end }}

[ops]
listen = "0.0.0.0:{{ int .Values.ports.ops }}"
{{- if .Values.web.enabled }}

# The dashboard (`protonn web`); its secrets come from Secrets, as environment variables.
[web]
listen = "0.0.0.0:{{ int .Values.ports.web }}"
public_url = {{ .Values.web.publicUrl | quote }}
client_id = {{ .Values.web.clientId }}
session_idle_secs = {{ int .Values.web.sessionIdleSeconds }}
session_max_age_secs = {{ int .Values.web.sessionMaxAgeSeconds }}
{{- with .Values.web.paddleCheckoutUrl }}
paddle_checkout_url = {{ . | quote }}
{{- end }}
{{- with .Values.web.operatorIds }}
operator_ids = [{{ join ", " . }}]
{{- end }}
{{- end }}
{{- with .Values.extraConfig }}

{{ . }}
{{- end }}
{{- end -}}

{{/* What the schema cannot judge about the store: the binary would refuse it at start (or
     the migration Job would fail), so the chart refuses it first, naming the value. */}}
{{- define "protonn.validateStorage" -}}
{{- if regexMatch "(?m)^[ \t]*\\[+[ \t]*\"?storage" .Values.extraConfig }}
{{- fail "extraConfig must not set [storage]: use storage.backend and storage.scylla" }}
{{- end }}
{{- if eq .Values.storage.backend "scylla" }}
{{- $scylla := .Values.storage.scylla }}
{{- if not $scylla.contactPoints }}
{{- fail "storage.backend scylla needs storage.scylla.contactPoints (host:port of a few ScyllaDB nodes)" }}
{{- end }}
{{- range $scylla.contactPoints }}
{{- $port := regexFind "[0-9]+$" . | int }}
{{- if or (lt $port 1) (gt $port 65535) }}
{{- fail (printf "storage.scylla.contactPoints: %q is not host:port" .) }}
{{- end }}
{{- end }}
{{- if not $scylla.replication }}
{{- fail "storage.backend scylla needs storage.scylla.replication, the replicas per data centre (e.g. {dc1: 3})" }}
{{- end }}
{{- if and $scylla.localDc (not (hasKey $scylla.replication $scylla.localDc)) }}
{{- fail (printf "storage.scylla.localDc %q is not one of storage.scylla.replication's data centres (%s)" $scylla.localDc (keys $scylla.replication | sortAlpha | join ", ")) }}
{{- end }}
{{- if ne (empty $scylla.tls.cert) (empty $scylla.tls.key) }}
{{- fail "storage.scylla.tls: a client certificate needs both cert and key" }}
{{- end }}
{{- if and (not $scylla.tls.ca) $scylla.tls.cert }}
{{- fail "storage.scylla.tls.cert needs storage.scylla.tls.ca, the CA of the ScyllaDB nodes" }}
{{- end }}
{{- range $field := list "ca" "cert" "key" }}
{{- $path := get $scylla.tls $field }}
{{- if $path }}
{{- $mounted := hasPrefix "/etc/ssl/certs/" $path }}
{{- range $.Values.extraVolumeMounts }}
{{- if hasPrefix (printf "%s/" (trimSuffix "/" .mountPath)) $path }}
{{- $mounted = true }}
{{- end }}
{{- end }}
{{- if not $mounted }}
{{- fail (printf "storage.scylla.tls.%s %q is in no extraVolumeMounts mountPath: the pods would not find it" $field $path) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq $.Values.mode "cluster") $.Values.coordinator.storage.existingClaim }}
{{- fail "coordinator.storage.existingClaim is for the embedded store: on ScyllaDB the coordinators keep nothing on disk" }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The ScyllaDB credentials, from an existing Secret, for every process that opens the store. */}}
{{- define "protonn.scyllaEnv" -}}
{{- if eq .Values.storage.backend "scylla" }}
{{- with .Values.storage.scylla.credentials }}
{{- if .existingSecret }}
- name: PROTONN_SCYLLA_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
- name: PROTONN_SCYLLA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* NetworkPolicy egress to ScyllaDB: the contact points' ports and the shard-aware port
     the driver also connects to (19042, or 19142 with TLS). */}}
{{- define "protonn.scyllaEgress" -}}
{{- $ports := list (ternary 19142 19042 (ne .Values.storage.scylla.tls.ca "")) }}
{{- range .Values.storage.scylla.contactPoints }}
{{- $ports = append $ports (regexFind "[0-9]+$" . | int) }}
{{- end }}
- ports:
    {{- range $ports | uniq | sortAlpha }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- with .Values.networkPolicy.scyllaTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
