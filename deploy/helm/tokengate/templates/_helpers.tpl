{{/*
Names, labels and the tokengate configuration. The config is built here, once, so that
the ConfigMap, the checksum that rolls the pods, the ports and the probes all come from
the same values.
*/}}

{{- define "tokengate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokengate.fullname" -}}
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

{{- define "tokengate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokengate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokengate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tokengate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tokengate
{{- end -}}

{{- define "tokengate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where the TLS Secret is mounted; the config's tls file paths point into it. */}}
{{- define "tokengate.tlsDir" -}}/etc/tokengate/tls{{- end -}}

{{/* "true" when the admin listener serves HTTPS (probes and scrapes follow). */}}
{{- define "tokengate.adminTls" -}}
{{- if and .Values.tls.enabled .Values.tls.admin.enabled -}}true{{- end -}}
{{- end -}}

{{/* The `tls:` block of one listener ($ = root, l = listener values, name). */}}
{{- define "tokengate.listenerTls" -}}
{{- $dir := include "tokengate.tlsDir" .root -}}
{{- $out := dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) "min_version" .l.minVersion -}}
{{- if .l.mtls -}}
{{- $_ := set $out "client_ca_file" (printf "%s/ca.crt" $dir) -}}
{{- if .l.allowedClients -}}
{{- $_ := set $out "allowed_clients" .l.allowedClients -}}
{{- end -}}
{{- else if .l.allowedClients -}}
{{- fail (printf "tls.%s.allowedClients needs tls.%s.mtls: true (the SANs are read from the client certificate)" .name .name) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The tokengate configuration: `config` plus what the chart owns (listen, tls,
revocation.redis), checked for the combinations the schema cannot express.
*/}}
{{- define "tokengate.config" -}}
{{- $v := .Values -}}
{{- $c := deepCopy $v.config -}}
{{- $sidecar := eq $v.mode "sidecar" -}}
{{- /* In sidecar mode Envoy is in the pod: gRPC stays on loopback. */ -}}
{{- $grpcHost := ternary "127.0.0.1" "0.0.0.0" $sidecar -}}
{{- $_ := set $c "listen" (dict "grpc" (printf "%s:%d" $grpcHost (int $v.ports.grpc)) "http" (printf "0.0.0.0:%d" (int $v.ports.http)) "admin" (printf "0.0.0.0:%d" (int $v.ports.admin))) -}}
{{- if $v.redis.url -}}
{{- $rev := default (dict) $c.revocation -}}
{{- $redis := dict "url" $v.redis.url -}}
{{- if $v.redis.existingSecret -}}
{{- $_ := set $redis "password_env" "TOKENGATE_REDIS_PASSWORD" -}}
{{- end -}}
{{- $_ := set $rev "redis" $redis -}}
{{- $_ := set $rev "store" "redis" -}}
{{- $_ := set $c "revocation" $rev -}}
{{- end -}}
{{- if $v.tls.enabled -}}
{{- if not $v.tls.existingSecret -}}
{{- fail "tls.enabled needs tls.existingSecret: the kubernetes.io/tls Secret (e.g. a cert-manager Certificate's secretName)" -}}
{{- end -}}
{{- if and $sidecar (or $v.tls.grpc.enabled $v.tls.http.enabled) -}}
{{- fail "sidecar mode: gRPC and HTTP are reached over the pod's loopback by its Envoy; set tls.grpc.enabled=false and tls.http.enabled=false (tls.admin may stay on)" -}}
{{- end -}}
{{- $tls := dict "reload_interval_seconds" (int $v.tls.reloadIntervalSeconds) -}}
{{- range $name := list "grpc" "http" "admin" -}}
{{- $l := index $v.tls $name -}}
{{- if $l.enabled -}}
{{- $_ := set $tls $name (include "tokengate.listenerTls" (dict "root" $ "l" $l "name" $name) | fromJson) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $c "tls" $tls -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/*
The sidecar's Envoy bootstrap: envoy/envoy.yaml (copied to files/, a test keeps them
equal) with this release's ports. Each port is in that file exactly once as
`port_value: N`; placeholders first, so that a new port equal to an old one is not
replaced twice.
*/}}
{{- define "tokengate.envoyConfig" -}}
{{- $e := .Files.Get "files/envoy.yaml" -}}
{{- $pairs := list (list 9001 .Values.ports.grpc) (list 8080 .Values.ports.http) (list 3000 .Values.sidecar.app.port) (list 10000 .Values.sidecar.envoy.port) -}}
{{- range $pair := $pairs -}}
{{- $from := printf "port_value: %d" (index $pair 0) -}}
{{- if ne (len (splitList $from $e)) 2 -}}
{{- fail (printf "files/envoy.yaml must hold %q exactly once" $from) -}}
{{- end -}}
{{- $e = replace $from (printf "port_value: @%d@" (index $pair 0)) $e -}}
{{- end -}}
{{- range $pair := $pairs -}}
{{- $e = replace (printf "port_value: @%d@" (index $pair 0)) (printf "port_value: %d" (int (index $pair 1))) $e -}}
{{- end -}}
{{- $e -}}
{{- end -}}
