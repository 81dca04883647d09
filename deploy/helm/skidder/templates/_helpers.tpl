{{/* The release's name for its objects, cut to Kubernetes' 63 characters. */}}
{{- define "skidder.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "skidder.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "indexer"). */}}
{{- define "skidder.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Pod labels: the selector labels and the Prometheus job name the
     dashboards and alert rules use (skidder-<component>). */}}
{{- define "skidder.podLabels" -}}
{{ include "skidder.selectorLabels" . }}
skidder.io/job: skidder-{{ .component }}
{{- end -}}

{{- define "skidder.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "skidder.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "skidder.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "skidder.credentialsSecret" -}}
{{- if .Values.store.credentials.existingSecret -}}
{{- .Values.store.credentials.existingSecret -}}
{{- else if .Values.store.credentials.accessKeyId -}}
{{- include "skidder.fullname" . }}-s3
{{- end -}}
{{- end -}}

{{/* The store, for every workload: the URL, the endpoint, the region and,
     where given, static keys from a Secret. */}}
{{- define "skidder.storeEnv" -}}
- name: SKIDDER_STORE
  value: {{ required "store.url is required" .Values.store.url | quote }}
{{- with .Values.store.s3.endpoint }}
- name: SKIDDER_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.store.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with include "skidder.credentialsSecret" . }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
- name: SKIDDER_LOG
  value: info
{{- end -}}

{{/* What every pod shares: (dict "ctx" $ "c" .Values.<component>). */}}
{{- define "skidder.podCommon" -}}
serviceAccountName: {{ include "skidder.serviceAccountName" .ctx }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Scrape annotations for a Prometheus that reads prometheus.io/*. */}}
{{- define "skidder.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end -}}
