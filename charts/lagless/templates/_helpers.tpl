{{/* The chart name, or nameOverride. */}}
{{- define "lagless.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's base name: fullnameOverride, else the release name when it already contains the
chart name, else <release>-<chart>. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "lagless.fullname" -}}
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

{{/* The name of the operator's objects: <fullname>-operator. */}}
{{- define "lagless.operatorName" -}}
{{- printf "%s-operator" (include "lagless.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "lagless.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels that select the operator's pods. The component "operator" keeps them apart from the
pods of MySQLClusters, which carry app.kubernetes.io/name=lagless with component mysql or proxy.
*/}}
{{- define "lagless.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lagless.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "lagless.labels" -}}
helm.sh/chart: {{ include "lagless.chart" . }}
{{ include "lagless.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "lagless.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lagless.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Lease the operator replicas elect a leader with, in the release namespace. */}}
{{- define "lagless.leaseName" -}}
{{- include "lagless.fullname" . -}}
{{- end -}}

{{- define "lagless.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "lagless.proxyImage" -}}
{{- printf "%s:%s" .Values.proxy.image.repository (.Values.proxy.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Operator replicas: replicaCount, else 2 with leader election and 1 without. */}}
{{- define "lagless.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount -}}
{{- if .Values.leaderElection.enabled -}}2{{- else -}}1{{- end -}}
{{- else -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "replicaCount above 1 needs leaderElection.enabled: two controllers would act on the same clusters" -}}
{{- end -}}
{{- .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* The namespace whose MySQLClusters the operator manages in namespaced mode. */}}
{{- define "lagless.watchNamespace" -}}
{{- .Values.watchNamespace -}}
{{- end -}}

{{/* Whether the ServiceMonitor API is served (helm template: --api-versions monitoring.coreos.com/v1/ServiceMonitor). */}}
{{- define "lagless.serviceMonitorAvailable" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor" -}}true{{- end -}}
{{- end -}}

{{/* Whether the PrometheusRule API is served (helm template: --api-versions monitoring.coreos.com/v1/PrometheusRule). */}}
{{- define "lagless.prometheusRuleAvailable" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule" -}}true{{- end -}}
{{- end -}}

{{/*
What the operator may do with the objects it reads and runs clusters with, cluster-wide
(ClusterRole) or in the watched namespace (Role). Only named resources and the verbs the code
uses: no wildcards. Objects are written by server-side apply, a PATCH that creates the object
when it is missing, which the API server also authorizes as `create`. Nothing is deleted by
the operator but a pod being re-seeded: the owned objects go by garbage collection.
*/}}
{{- define "lagless.rules" -}}
# The MySQLClusters: the controllers list and watch them, and the operator adds and removes
# its finalizer with a JSON patch. A MySQLTenantPool's clusters are server-side applied (a
# PATCH that creates them); updating and deleting others is left to users.
- apiGroups: ["lagless.dev"]
  resources: ["mysqlclusters"]
  verbs: ["list", "watch", "create", "patch"]
# The MySQLTenantPools: listed and watched, the finalizer added and removed by JSON patch, and
# read by name by a tenant move.
- apiGroups: ["lagless.dev"]
  resources: ["mysqltenantpools"]
  verbs: ["get", "list", "watch", "patch"]
# Status of both, by server-side apply.
- apiGroups: ["lagless.dev"]
  resources: ["mysqlclusters/status", "mysqltenantpools/status"]
  verbs: ["patch"]
# Declarative accounts (MySQLDatabase, MySQLUser, MySQLGrant): listed by each cluster's
# orchestration every few seconds, their Ready condition written by a merge patch of the status.
- apiGroups: ["lagless.dev"]
  resources: ["mysqldatabases", "mysqlusers", "mysqlgrants"]
  verbs: ["list"]
- apiGroups: ["lagless.dev"]
  resources: ["mysqldatabases/status", "mysqlusers/status", "mysqlgrants/status"]
  verbs: ["patch"]
# Backups: listed by each cluster's backup pass, created for spec.backup.schedule, deleted
# when the retention policy deletes their backup, their status written by a merge patch.
- apiGroups: ["lagless.dev"]
  resources: ["mysqlbackups"]
  verbs: ["list", "create", "delete"]
- apiGroups: ["lagless.dev"]
  resources: ["mysqlbackups/status"]
  verbs: ["patch"]
# Tenant moves: listed and watched, read fresh before a move starts, created by a pool's
# rebalancing, the finalizer added and removed by JSON patch, the mover's record kept in the
# status by server-side apply.
- apiGroups: ["lagless.dev"]
  resources: ["mysqltenantmoves"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["lagless.dev"]
  resources: ["mysqltenantmoves/status"]
  verbs: ["patch"]
- apiGroups: ["lagless.dev"]
  resources: ["mysqltenantmoves/finalizers"]
  verbs: ["update"]
# Owner references with blockOwnerDeletion on the objects below need this where the
# OwnerReferencesPermissionEnforcement admission plugin runs.
- apiGroups: ["lagless.dev"]
  resources: ["mysqlclusters/finalizers", "mysqltenantpools/finalizers"]
  verbs: ["update"]
# Owned objects the controller watches (only those labelled managed-by lagless-operator), so a
# change to one reconciles its cluster: members, proxies, their Services.
- apiGroups: ["apps"]
  resources: ["statefulsets", "deployments"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch"]
# Server configuration, topology and pool documents: watched too, and the topology is read by
# name when a cluster's orchestration starts, before each publication, and by each pool's loop
# for its clusters' primaries.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Credentials: read by name (the admin, replication, agent and pool Secrets), and the generated
# ones created once. Never listed or watched: the operator sees no Secret it was not told the name of.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# Applied, never read back or watched: the disruption budget and the network policies.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create", "patch"]
# A member being re-seeded (spec.reseed) has its pod deleted so the StatefulSet makes a new
# one, whose init step copies a donor's data; the new pod is told apart by its uid. The proxy
# pods are listed (by label) to push each new topology to them.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "delete"]
# Events on the MySQLClusters and MySQLTenantPools (failover, switchover, growth, ...): created, and patched
# when one repeats. The events.k8s.io API only; the core group's is not used.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# spec.tls.issuerRef: the operator asks cert-manager for the cluster's certificate by applying
# a Certificate; it never reads cert-manager's other objects.
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["create", "patch"]
{{- end -}}
