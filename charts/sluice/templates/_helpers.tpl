{{/* The release's full name, at most 63 characters. */}}
{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels that select the controller's pods. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* The ServiceAccount's name. */}}
{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The one namespace watched, or empty for all. */}}
{{- define "sluice.watchNamespace" -}}
{{- if .Values.controller.watchNamespace -}}
{{- .Values.controller.watchNamespace -}}
{{- else if .Values.controller.namespaced -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/*
The rules the controller needs, and no more: each line is something the code does.
*/}}
{{- define "sluice.rules" -}}
# Only the verbs the controller's code uses (tests/helm.rs holds the exact list).
# Rollouts: watched (list, watch); the status replaced (update).
- apiGroups: [argoproj.io]
  resources: [rollouts]
  verbs: [list, watch]
- apiGroups: [argoproj.io]
  resources: [rollouts/status]
  verbs: [update]
# Owner references with blockOwnerDeletion need update on the owner's finalizers.
- apiGroups: [argoproj.io]
  resources: [rollouts/finalizers, analysisruns/finalizers, experiments/finalizers]
  verbs: [update]
# Experiments: watched, created by a canary's experiment step and terminated (patch), read on a
# name collision; their status written (update; patch when one cannot be read).
- apiGroups: [argoproj.io]
  resources: [experiments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [argoproj.io]
  resources: [experiments/status]
  verbs: [update, patch]
# Analysis: runs created from templates (read on a name collision), terminated and marked spent
# (patch), their status written (update by the AnalysisRun controller, patch when a run cannot
# start), old ones deleted.
- apiGroups: [argoproj.io]
  resources: [analysisruns]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [argoproj.io]
  resources: [analysisruns/status]
  verbs: [update, patch]
# Templates: watched by metadata (a rollout naming a missing one is invalid), read whole when
# a run is created.
- apiGroups: [argoproj.io]
  resources: [analysistemplates]
  verbs: [get, list, watch]
# The versions of a rollout: created (read on a name collision), scaled and annotated, deleted.
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get, list, watch, create, patch, delete]
# Deployments a workloadRef names: watched by metadata (a new template wakes the rollout), read
# for their template, scaled down by the scaleDown policy.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, patch]
# Services: watched, selectors pointed at a version; an experiment's template Services read,
# created and deleted with it.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
# Pods: listed while spec.restartAt is pending and evicted (which honours PodDisruptionBudgets);
# listed and patched to move the ephemeral metadata of their role (active/preview, stable/canary).
- apiGroups: [""]
  resources: [pods]
  verbs: [list, patch]
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
# Secrets: read for analysis args (valueFrom.secretKeyRef) and provider credentials only.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Events on rollouts and runs (events.k8s.io/v1: created, then patched as a series repeats).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Job metric provider.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# Traffic routers: their objects read before each plan and rewritten (update) with the weights
# and routes it decided; the canary Ingress (NGINX) and the TrafficSplit (SMI) are created.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes, grpcroutes, tcproutes]
  verbs: [get, update]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, create, update]
- apiGroups: [networking.istio.io]
  resources: [virtualservices, destinationrules]
  verbs: [get, update]
- apiGroups: [split.smi-spec.io]
  resources: [trafficsplits]
  verbs: [get, create, update]
- apiGroups: [traefik.io]
  resources: [traefikservices]
  verbs: [get, update]
# Ambassador: a canary Mapping per Mapping, deleted when it carries nothing; APISIX: a route per
# header route, deleted when the route ends.
- apiGroups: [getambassador.io]
  resources: [mappings]
  verbs: [get, create, update, delete]
- apiGroups: [apisix.apache.org]
  resources: [apisixroutes]
  verbs: [get, create, update, delete]
{{- end -}}
