{{/* Names. */}}
{{- define "kuberunner.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kuberunner.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kuberunner.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kuberunner.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "kuberunner.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "kuberunner.fullname" .) -}}
{{- end -}}

{{- define "kuberunner.tokenSecretName" -}}
{{- .Values.runnerToken.existingSecret | default (printf "%s-token" (include "kuberunner.fullname" .)) -}}
{{- end -}}

{{/* The namespace the job pods go to: [runners.kubernetes] namespace, else the release's. */}}
{{- define "kuberunner.jobNamespace" -}}
{{- (.Values.config.runners.kubernetes).namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "kuberunner.logTransport" -}}
{{- $transport := (.Values.config.runners.kubernetes).log_transport | default "file" -}}
{{- if not (has $transport (list "file" "kubelet")) -}}
{{- fail (printf "config.runners.kubernetes.log_transport: %q is neither \"file\" nor \"kubelet\"" $transport) -}}
{{- end -}}
{{- $transport -}}
{{- end -}}

{{/*
TOML, written from values whose keys are config.toml's own. Helm reads every number of values.yaml
as a float: whole ones are written as integers, as config.toml's integer keys need. Strings go through
toJson, whose escapes are all valid in a TOML basic string. Null values are left out, so a user can
drop a default with `key: null`.
*/}}
{{- define "kuberunner.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "kuberunner.toml.value" -}}
{{- if kindIs "map" . -}}
{{ "{" }}{{- $first := true -}}
{{- range $key, $value := . -}}
{{- if not (kindIs "invalid" $value) -}}
{{- if not $first }}, {{ else }} {{ end -}}{{- $first = false -}}
{{- include "kuberunner.toml.key" $key }} = {{ include "kuberunner.toml.value" $value -}}
{{- end -}}
{{- end }} {{ "}" }}
{{- else if kindIs "slice" . -}}
[{{- range $i, $value := . -}}{{- if $i }}, {{ end -}}{{ include "kuberunner.toml.value" $value }}{{- end -}}]
{{- else if kindIs "string" . -}}
{{ toJson . }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 (int64 .)) (float64 .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) -}}
{{ . }}
{{- else -}}
{{- fail (printf "a config value of kind %s cannot be written as TOML: %v" (kindOf .) .) -}}
{{- end -}}
{{- end -}}

{{/* One table: its plain keys, then each map-valued key as a [path.key] table of its own. */}}
{{- define "kuberunner.toml.table" -}}
{{- $path := .path -}}
{{- $indent := .indent -}}
{{- range $key, $value := .table -}}
{{- if and (not (kindIs "invalid" $value)) (not (kindIs "map" $value)) }}
{{ $indent }}{{ include "kuberunner.toml.key" $key }} = {{ include "kuberunner.toml.value" $value }}
{{- end -}}
{{- end -}}
{{- range $key, $value := .table -}}
{{- if kindIs "map" $value }}
{{ $indent }}[{{ $path }}.{{ include "kuberunner.toml.key" $key }}]
{{- include "kuberunner.toml.table" (dict "path" (printf "%s.%s" $path (include "kuberunner.toml.key" $key)) "table" $value "indent" (printf "%s  " $indent)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* config.toml without the token: the init container adds it from the Secret. */}}
{{- define "kuberunner.configToml" -}}
{{- $config := .Values.config -}}
{{- $runner := deepCopy $config.runners -}}
{{- if hasKey $runner "token" -}}
{{- fail "config.runners.token: the token goes in runnerToken (a Secret), never in config values" -}}
{{- end -}}
{{- $_ := required "config.runners.url: the GitLab instance's URL is required" $runner.url -}}
{{- $kubernetes := $runner.kubernetes | default dict -}}
{{- $_ := set $kubernetes "namespace" (include "kuberunner.jobNamespace" .) -}}
{{- $_ := set $runner "kubernetes" $kubernetes -}}
{{- $_ := set $runner "executor" "kubernetes" -}}
# config.toml rendered by the kuberunner chart from its values; the token is added at start.
{{- range $key, $value := $config -}}
{{- if and (ne $key "runners") (not (kindIs "invalid" $value)) }}
{{ include "kuberunner.toml.key" $key }} = {{ include "kuberunner.toml.value" $value }}
{{- end -}}
{{- end }}

[[runners]]
{{- include "kuberunner.toml.table" (dict "path" "runners" "table" $runner "indent" "  ") }}
{{ end -}}

{{- define "kuberunner.metricsPort" -}}
{{- with .Values.config.listen_address -}}{{- regexFind "[0-9]+$" . -}}{{- end -}}
{{- end -}}
