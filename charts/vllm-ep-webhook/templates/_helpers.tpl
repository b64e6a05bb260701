{{/*
Chart name, truncated to a DNS label.
*/}}
{{- define "vllm-ep-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the name of the Service, the webhook configuration, the RBAC objects and
(with suffixes) of everything else. A DNS label (63 characters at most).
*/}}
{{- define "vllm-ep-webhook.fullname" -}}
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

{{- define "vllm-ep-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object except the test Pod: the standard ones, component included.
*/}}
{{- define "vllm-ep-webhook.labels" -}}
{{ include "vllm-ep-webhook.baseLabels" . }}
app.kubernetes.io/component: admission-webhook
{{- end }}

{{- define "vllm-ep-webhook.baseLabels" -}}
helm.sh/chart: {{ include "vllm-ep-webhook.chart" . }}
app.kubernetes.io/name: {{ include "vllm-ep-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The server Pods. The component keeps the test Pod out of the Service, the PDB and the spread.
*/}}
{{- define "vllm-ep-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vllm-ep-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: admission-webhook
{{- end }}

{{- define "vllm-ep-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vllm-ep-webhook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vllm-ep-webhook.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The Secret holding the serving pair (tls.crt, tls.key, and ca.crt except with existingSecret).
*/}}
{{- define "vllm-ep-webhook.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "existingSecret" }}
{{- .Values.certificates.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "vllm-ep-webhook.fullname" .) }}
{{- end }}
{{- end }}

{{- define "vllm-ep-webhook.servingCertificateName" -}}
{{- printf "%s-serving" (include "vllm-ep-webhook.fullname" .) }}
{{- end }}

{{/*
The DNS names the API server may use for the Service; they all go into the certificate.
*/}}
{{- define "vllm-ep-webhook.dnsNames" -}}
{{- $svc := include "vllm-ep-webhook.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{- define "vllm-ep-webhook.certDir" -}}/etc/webhook/certs{{- end }}
{{- define "vllm-ep-webhook.policyDir" -}}/etc/webhook/policy{{- end }}

{{/*
Checks of value combinations that the schema cannot express; included by the Deployment,
so that `helm template`, `helm lint` and `helm install` all stop with the message.
*/}}
{{- define "vllm-ep-webhook.validate" -}}
{{- $c := .Values.certificates }}
{{- if eq $c.mode "existingSecret" }}
{{- $_ := required "certificates.existingSecret is required with certificates.mode=existingSecret: the name of a kubernetes.io/tls Secret (tls.crt, tls.key) in the release namespace" $c.existingSecret }}
{{- $ca := required "certificates.caBundle is required with certificates.mode=existingSecret: base64 of the PEM CA certificate(s) that signed the serving certificate" $c.caBundle }}
{{- if not (contains "-----BEGIN CERTIFICATE-----" (b64dec $ca)) }}
{{- fail "certificates.caBundle must be base64 of PEM certificates (-----BEGIN CERTIFICATE-----...); encode with: base64 -w0 ca.crt" }}
{{- end }}
{{- else if or $c.existingSecret $c.caBundle }}
{{- fail (printf "certificates.existingSecret and certificates.caBundle are only used with certificates.mode=existingSecret (mode is %s)" $c.mode) }}
{{- end }}
{{- if .Values.policy.optInOnly }}
{{- $cfg := .Values.policy.config | default dict }}
{{- $modes := list }}
{{- with $cfg.defaults }}{{- if kindIs "map" . }}{{- $modes = append $modes (toString (.mode | default "")) }}{{- end }}{{- end }}
{{- range $cfg.rules | default list }}{{- if kindIs "map" . }}{{- $modes = append $modes (toString (.mode | default "")) }}{{- end }}{{- end }}
{{- if or (has "enforce" $modes) (has "forbid" $modes) }}
{{- fail "policy.config has enforce/forbid modes, which concern InferenceServices without the ep.enabled annotation: set policy.optInOnly=false so that every InferenceService reaches the webhook" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Where a client finds the CA as a key `ca.crt`: the ConfigMap made from certificates.caBundle
(existingSecret), else the TLS Secret (the server, Helm and cert-manager's CA issuer all write
ca.crt). As a SecretOrConfigMap selector.
*/}}
{{- define "vllm-ep-webhook.caSource" -}}
{{- if eq .Values.certificates.mode "existingSecret" }}
configMap:
  name: {{ include "vllm-ep-webhook.fullname" . }}-ca
  key: ca.crt
{{- else }}
secret:
  name: {{ include "vllm-ep-webhook.tlsSecretName" . }}
  key: ca.crt
{{- end }}
{{- end }}
