{{/*
The labels every object of the chart carries: the ones straitctl has always
set, so that an object rendered by helm and by straitctl join is the same.
*/}}
{{- define "strait.labels" -}}
app.kubernetes.io/part-of: strait
{{- end }}

{{/* The cluster ID, required: an RFC 1123 label unique in the clusterset. */}}
{{- define "strait.clusterID" -}}
{{- required "clusterID is required: the cluster's ID in the clusterset, an RFC 1123 label" .Values.clusterID -}}
{{- end }}

{{/* The pod CIDRs, comma-separated as the components' --pod-cidrs take them. */}}
{{- define "strait.podCIDRs" -}}
{{- if not .Values.podCIDRs }}{{ fail "podCIDRs is required: the cluster's pod CIDRs, e.g. [10.1.0.0/16]" }}{{ end -}}
{{- join "," .Values.podCIDRs -}}
{{- end }}

{{/* The service CIDRs, comma-separated as the components' --service-cidrs take them. */}}
{{- define "strait.serviceCIDRs" -}}
{{- if not .Values.serviceCIDRs }}{{ fail "serviceCIDRs is required: the cluster's service CIDRs, e.g. [10.101.0.0/16]" }}{{ end -}}
{{- join "," .Values.serviceCIDRs -}}
{{- end }}

{{/* The cable driver, wireguard or vxlan. */}}
{{- define "strait.cableDriver" -}}
{{- if not (has .Values.cableDriver (list "wireguard" "vxlan")) }}{{ fail (printf "cableDriver %q: want wireguard or vxlan" .Values.cableDriver) }}{{ end -}}
{{- .Values.cableDriver -}}
{{- end }}

{{/*
A component's image, <image.repository>/<name>:<image.tag>; the tag defaults
to the chart's appVersion. Called with (list $ "strait-gateway").
*/}}
{{- define "strait.image" -}}
{{- $root := index . 0 -}}
{{- printf "%s/%s:%s" $root.Values.image.repository (index . 1) ($root.Values.image.tag | default $root.Chart.AppVersion) -}}
{{- end }}

{{/* imagePullPolicy, only when image.pullPolicy is set (else Kubernetes' default). */}}
{{- define "strait.pullPolicy" -}}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end }}

{{/*
A workload's placement and resources: nodeSelector, tolerations and
resources of the component's values (e.g. .Values.gateway), each only when
set. Called with the component's values; nindent to the pod spec.
*/}}
{{- define "strait.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
