#!/usr/bin/env python3
"""Checks the Lagless Helm chart with Helm's own engine, offline.

Helm comes from the PyPI package helm-python-sdk (import name `helm_python`), which bundles
Helm v4's Go SDK as a native library; no `helm` binary and no cluster are needed. What runs:

* `helm lint --strict` of the chart, with the default values and with each values file below;
* `helm template` (an install with a client-side dry run, as `helm template` does) with the
  default values and the files in tests/values/, with Kubernetes 1.37 capabilities and, for
  one file, the monitoring.coreos.com/v1/ServiceMonitor API as `--api-versions` would add;
* facts about the rendered objects: RBAC rules exactly as listed in EXPECTED_RULES (no
  wildcard anywhere, Secrets never listed or watched), Role instead of ClusterRole in
  namespaced mode, the Lease Role and
  `--leader-election` only when leader election is on, arguments, probes, security contexts,
  labels and cross-references;
* every rendered object and the CRD against the Kubernetes 1.37 schemas with
  kubernetes-validate, strict (unknown fields are errors); ServiceMonitor and PrometheusRule,
  types from CRDs that those schemas do not hold, are the only kinds skipped;
* the PrometheusRule (with its API) holding rules/lagless.rules.yaml, and the Grafana dashboard
  ConfigMap holding dashboards/lagless.json, each only when asked for;
* charts/lagless/crds/ byte-identical to crds/ (the MySQLCluster and MySQLTenantPool CRDs);
* values of the wrong type refused by values.schema.json, and more than one replica without
  leader election refused by the templates;
* the manifests shown in docs/kubernetes.md valid against the same schemas.

Run: python3 charts/lagless/tests/check_chart.py   (exit 0: all passed; 1: a check failed;
2: a needed package is missing: run scripts/setup.sh).
"""

from __future__ import annotations

import copy
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
CHART = HERE.parent
REPO = CHART.parent.parent
VALUES = HERE / "values"

KUBERNETES_VERSION = "1.37.0"
NAMESPACE = "lagless-system"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
# Kinds that come from CRDs and so are not in the Kubernetes schemas kubernetes-validate holds.
NOT_IN_KUBERNETES_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

try:
    import helm_python as helm
    from helm_python import _native as helm_native
    import kubernetes_validate
    import yaml
except ImportError as missing:  # pragma: no cover - environment problem, reported plainly
    print(
        f"check_chart: {missing}. The chart checks need the PyPI packages helm-python-sdk and "
        "kubernetes-validate: run scripts/setup.sh",
        file=sys.stderr,
    )
    sys.exit(2)


class CheckFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# --- Helm ------------------------------------------------------------------------------------


def load_values(name: str | None) -> dict[str, Any] | None:
    """A values file of tests/values, parsed by Helm as `-f` would."""
    if name is None:
        return None
    return helm.values_from_yaml((VALUES / name).read_text())


def lint(values: dict[str, Any] | None) -> None:
    """`helm lint --strict --kube-version 1.37.0 --namespace lagless-system [-f values]`."""
    report = helm.lint(
        CHART,
        values,
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBERNETES_VERSION}",
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [
        {"severity": 3, "path": "", "error": e} for e in report["errors"]
    ]
    check(report["total_charts_linted"] == 1, f"lint linted {report['total_charts_linted']} charts")
    check(not problems, "helm lint --strict: " + json.dumps(problems, indent=2))


class Rendered:
    def __init__(self, manifest: str, notes: str):
        self.manifest = manifest
        self.notes = notes
        self.objects = [o for o in yaml.safe_load_all(manifest) if o]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        check(len(found) == 1, f"expected one {kind}, rendered {len(found)}")
        return found[0]

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)


def template(
    values: dict[str, Any] | None,
    *,
    release: str = "lagless",
    namespace: str = NAMESPACE,
    api_versions: list[str] | None = None,
    kube_version: str = KUBERNETES_VERSION,
) -> Rendered:
    """`helm template <release> charts/lagless -n <namespace> --kube-version <v>
    [--api-versions ...] [-f values]`: Helm's install action with a client-side dry run, which
    is what `helm template` runs. The package's Python `install` does not expose
    `api_versions`/`kube_version`, so the library's `helm_install` is called with them."""
    options = {
        "namespace": namespace,
        "dry_run": "client",
        "kube_version": f"v{kube_version}",
        "api_versions": api_versions or [],
    }
    with helm.Chart.load(CHART) as chart, helm.Config(
        namespace=namespace, storage_driver="memory"
    ) as config:
        payload = helm_native.call_string(
            "helm_install",
            config._raw(),
            helm_native.HANDLE(0),
            chart._raw(),
            None,
            release,
            None if values is None else json.dumps(values),
            json.dumps(options),
        )
    release_info = json.loads(payload)
    return Rendered(release_info.get("manifest", ""), release_info.get("notes", ""))


def refused(values: dict[str, Any]) -> str:
    """The error Helm gives when installing with `values`; fails the check if there is none."""
    try:
        template(values)
    except helm.HelmError as error:
        return str(error)
    raise CheckFailed(f"values were accepted: {values}")


# --- facts about rendered objects ------------------------------------------------------------

# Server-side apply is a PATCH that creates a missing object, authorized as create too.
APPLIED = ["create", "patch"]
# Applied and watched by the controller (owned objects that trigger a reconcile).
WATCHED = ["list", "watch", *APPLIED]

# Every permission the operator is given over MySQLClusters, MySQLTenantPools, MySQLTenantMoves
# and the objects it
# runs them with, as (apiGroup, resource, verbs): what operator/src/kube uses, nothing more. The
# rendered ClusterRole/Role must hold exactly these.
EXPECTED_RULES = {
    ("lagless.dev", "mysqlclusters"): ["list", "watch", *APPLIED],
    ("lagless.dev", "mysqlclusters/status"): ["patch"],
    ("lagless.dev", "mysqlclusters/finalizers"): ["update"],
    ("lagless.dev", "mysqltenantpools"): ["get", "list", "watch", "patch"],
    ("lagless.dev", "mysqltenantpools/status"): ["patch"],
    ("lagless.dev", "mysqltenantpools/finalizers"): ["update"],
    ("lagless.dev", "mysqldatabases"): ["list"],
    ("lagless.dev", "mysqlusers"): ["list"],
    ("lagless.dev", "mysqlgrants"): ["list"],
    ("lagless.dev", "mysqldatabases/status"): ["patch"],
    ("lagless.dev", "mysqlusers/status"): ["patch"],
    ("lagless.dev", "mysqlgrants/status"): ["patch"],
    ("lagless.dev", "mysqlbackups"): ["create", "delete", "list"],
    ("lagless.dev", "mysqlbackups/status"): ["patch"],
    ("lagless.dev", "mysqltenantmoves"): ["get", "list", "watch", "create", "patch"],
    ("lagless.dev", "mysqltenantmoves/status"): ["patch"],
    ("lagless.dev", "mysqltenantmoves/finalizers"): ["update"],
    ("apps", "statefulsets"): WATCHED,
    ("apps", "deployments"): WATCHED,
    ("", "services"): WATCHED,
    ("", "configmaps"): ["get", *WATCHED],
    ("", "secrets"): ["get", *APPLIED],
    ("policy", "poddisruptionbudgets"): APPLIED,
    ("networking.k8s.io", "networkpolicies"): APPLIED,
    ("", "pods"): ["get", "list", "delete"],
    ("events.k8s.io", "events"): ["create", "patch"],
    ("cert-manager.io", "certificates"): APPLIED,
}

# Verbs no rule of the chart may grant, on any resource.
NEVER = {"*", "escalate", "bind", "impersonate", "deletecollection"}


def flatten_rules(rules: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[str]]:
    """(apiGroup, resource, resourceName or "") -> sorted verbs, checking for wildcards."""
    out: dict[tuple[str, str, str], set[str]] = {}
    for rule in rules:
        check("nonResourceURLs" not in rule, f"non-resource rule {rule}")
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            for item in rule.get(field, []):
                check("*" not in item, f"wildcard in {field} of rule {rule}")
        names = rule.get("resourceNames") or [""]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for name in names:
                    out.setdefault((group, resource, name), set()).update(rule["verbs"])
    return {k: sorted(v) for k, v in out.items()}


def check_rules_everywhere(rendered: Rendered) -> None:
    for role in rendered.of_kind("ClusterRole") + rendered.of_kind("Role"):
        check_least_privilege(role)


def check_least_privilege(role: dict[str, Any]) -> None:
    """What must hold of every rendered role whatever EXPECTED_RULES says: no wildcard (in any
    field, flatten_rules), Secrets never listed or watched (that would hand the operator every
    Secret of the namespace or cluster), no RBAC objects, no escalating verbs."""
    name = f"{role['kind']} {role['metadata']['name']}"
    rules = flatten_rules(role.get("rules", []))
    for (group, resource, _), verbs in rules.items():
        check(not NEVER & set(verbs), f"{name}: {verbs} on {group or 'core'}/{resource}")
        check(group != "rbac.authorization.k8s.io", f"{name}: rules on RBAC objects")
        if (group, resource) == ("", "secrets"):
            check(not {"list", "watch"} & set(verbs), f"{name}: secrets {verbs}")
            check(set(verbs) <= {"get", "create", "patch"}, f"{name}: secrets {verbs}")


def check_operator_rules(role: dict[str, Any]) -> None:
    got = flatten_rules(role["rules"])
    expected = {(g, r, ""): sorted(v) for (g, r), v in EXPECTED_RULES.items()}
    if got != expected:
        differ = sorted(set(got) ^ set(expected) | {k for k in got if k in expected and got[k] != expected[k]})
        raise CheckFailed(
            f"{role['kind']} {role['metadata']['name']} rules differ from EXPECTED_RULES at "
            + ", ".join(f"{g or 'core'}/{r}: rendered {got.get((g, r, n))}, expected {expected.get((g, r, n))}" for g, r, n in differ)
        )


def check_lease_role(role: dict[str, Any], lease: str) -> None:
    got = flatten_rules(role["rules"])
    expected = {
        ("coordination.k8s.io", "leases", ""): ["create"],
        ("coordination.k8s.io", "leases", lease): ["get", "update"],
    }
    check(got == expected, f"lease Role rules: {got}, expected {expected}")


def check_binding(binding: dict[str, Any], role: dict[str, Any], service_account: str) -> None:
    check(binding["roleRef"]["kind"] == role["kind"], f"{binding['metadata']['name']} refers to a {binding['roleRef']['kind']}")
    check(binding["roleRef"]["name"] == role["metadata"]["name"], f"{binding['metadata']['name']} refers to {binding['roleRef']['name']}")
    if binding["kind"] == "RoleBinding":
        check(
            binding["metadata"]["namespace"] == role["metadata"]["namespace"],
            f"RoleBinding {binding['metadata']['name']} is not in its Role's namespace",
        )
    check(
        binding["subjects"] == [{"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}],
        f"{binding['metadata']['name']} subjects: {binding['subjects']}",
    )


def operator_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    check(len(containers) == 1, f"{len(containers)} containers in the operator pod")
    return containers[0]


def flag(args: list[str], name: str) -> str | None:
    """The value following `name` in args, or None when the flag is absent."""
    if name not in args:
        return None
    check(args.count(name) == 1, f"{name} given twice: {args}")
    index = args.index(name)
    check(index + 1 < len(args) and not args[index + 1].startswith("--"), f"{name} has no value: {args}")
    return args[index + 1]


def check_operator_pod(rendered: Rendered, *, port: int) -> dict[str, Any]:
    deployment = rendered.one("Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    check(all(labels.get(k) == v for k, v in selector.items()), "the selector does not match the pod labels")
    check(selector.get("app.kubernetes.io/component") == "operator", f"selector {selector}")
    # What the clusters' NetworkPolicies admit the operator by (operator_pod_labels in
    # operator/src/kube/builders.rs); not in the selector, which cannot change on upgrade.
    check(labels.get("app.kubernetes.io/part-of") == "lagless", f"pod labels {labels}")
    check(labels.get("app.kubernetes.io/component") == "operator", f"pod labels {labels}")
    check("app.kubernetes.io/part-of" not in selector, f"selector {selector}")

    container = operator_container(deployment)
    check(container["command"] == ["lagless-operator", "controller"], f"command {container['command']}")
    check(flag(container["args"], "--metrics-address") == f"0.0.0.0:{port}", f"args {container['args']}")

    env = {e["name"]: e for e in container["env"]}
    for name, path in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")]:
        check(env[name].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == path, f"env {name}: {env.get(name)}")

    ports = {p["name"]: p for p in container["ports"]}
    check(ports["metrics"]["containerPort"] == port, f"container ports {container['ports']}")
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        http = container[probe]["httpGet"]
        check(http == {"path": path, "port": "metrics"}, f"{probe}: {http}")

    security = pod["securityContext"]
    check(security.get("runAsNonRoot") is True, f"pod securityContext {security}")
    check(security.get("runAsUser") == 65532, f"pod securityContext {security}")
    check(security.get("seccompProfile") == {"type": "RuntimeDefault"}, f"pod securityContext {security}")
    security = container["securityContext"]
    check(security.get("readOnlyRootFilesystem") is True, f"container securityContext {security}")
    check(security.get("allowPrivilegeEscalation") is False, f"container securityContext {security}")
    check(security.get("runAsNonRoot") is True, f"container securityContext {security}")
    check(security.get("capabilities") == {"drop": ["ALL"]}, f"container securityContext {security}")
    check(not security.get("privileged"), "privileged container")
    check(security.get("seccompProfile") == {"type": "RuntimeDefault"}, f"container securityContext {security}")

    service = rendered.one("Service")
    check(service["spec"]["selector"] == selector, f"metrics Service selector {service['spec']['selector']}")
    check(
        service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}],
        f"metrics Service ports {service['spec']['ports']}",
    )

    service_accounts = rendered.of_kind("ServiceAccount")
    if service_accounts:
        check(pod["serviceAccountName"] == service_accounts[0]["metadata"]["name"], "the pod does not run as the chart's ServiceAccount")
    return deployment


def check_namespaces(rendered: Rendered, namespaces: set[str]) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for obj in rendered.objects:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            check(ns is None, f"cluster-scoped {obj['kind']} with a namespace")
        else:
            check(ns in namespaces, f"{obj['kind']} {obj['metadata']['name']} in namespace {ns!r}")
        labels = obj["metadata"].get("labels", {})
        check(labels.get("app.kubernetes.io/managed-by") == "Helm", f"{obj['kind']} {obj['metadata']['name']} labels {labels}")


def lagless_schemas() -> dict[str, Any]:
    """The openAPIV3Schema of each Lagless kind, from the generated CRD files."""
    schemas = {}
    for file in CRD_FILES:
        for crd in yaml.safe_load_all((REPO / "crds" / file).read_text()):
            if crd:
                version = crd["spec"]["versions"][0]
                schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate_lagless(obj: dict[str, Any], label: str) -> None:
    """A Lagless object against its CRD's schema (what the API server checks before CEL)."""
    import jsonschema

    schema = lagless_schemas().get(obj["kind"])
    if schema is None:
        raise CheckFailed(f"{label}: no CRD defines {obj['kind']}")
    # The API server adds these; the CRD schema leaves them open.
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    try:
        jsonschema.validate(body, {k: v for k, v in schema.items() if k != "x-kubernetes-validations"})
    except jsonschema.ValidationError as error:
        raise CheckFailed(
            f"{label}: {obj['kind']} {obj['metadata'].get('name')} does not validate against its CRD: "
            f"{error.message} at {'/'.join(map(str, error.path))}"
        ) from None


def validate_schemas(objects: list[dict[str, Any]], label: str) -> int:
    """Strict Kubernetes 1.37 schema validation of every object (a Lagless one against its
    CRD); returns how many ran."""
    validated = 0
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in NOT_IN_KUBERNETES_SCHEMAS:
            continue
        if obj["apiVersion"].startswith("lagless.dev/"):
            validate_lagless(obj, label)
            validated += 1
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise CheckFailed(
                f"{label}: {obj['kind']} {obj['metadata'].get('name')} does not validate against "
                f"Kubernetes {KUBERNETES_VERSION}: {error.message} at {'/'.join(map(str, error.path))}"
            ) from None
        validated += 1
    return validated


# --- the checks ------------------------------------------------------------------------------


def check_engine() -> None:
    version = helm.helm_sdk_version()
    check(version.startswith("v4."), f"helm-python-sdk binds Helm {version}, expected v4")


def check_lint() -> None:
    lint(None)
    for name in ("namespaced.yaml", "custom.yaml"):
        lint(load_values(name))


CRD_FILES = {
    "mysqlcluster.yaml": ["mysqlclusters.lagless.dev"],
    "mysqltenantpool.yaml": ["mysqltenantpools.lagless.dev"],
    "mysqlaccounts.yaml": ["mysqldatabases.lagless.dev", "mysqlusers.lagless.dev", "mysqlgrants.lagless.dev"],
    "mysqlbackup.yaml": ["mysqlbackups.lagless.dev"],
    "mysqltenantmove.yaml": ["mysqltenantmoves.lagless.dev"],
}


def check_crd_copy() -> None:
    for file in CRD_FILES:
        chart_crd = CHART / "crds" / file
        check(
            chart_crd.read_bytes() == (REPO / "crds" / file).read_bytes(),
            f"charts/lagless/crds/{file} differs from crds/{file}: cp crds/{file} charts/lagless/crds/",
        )
    with helm.Chart.load(CHART) as chart:
        crds = chart.crds
    names = sorted(c["name"] for c in crds)
    check(names == [f"crds/{f}" for f in sorted(CRD_FILES)], f"Helm sees CRDs {names}")
    for crd in crds:
        objects = [o for o in yaml.safe_load_all(crd["data"]) if o]
        expected = CRD_FILES[crd["name"].removeprefix("crds/")]
        check(
            [(o["kind"], o["metadata"]["name"]) for o in objects]
            == [("CustomResourceDefinition", name) for name in expected],
            f"the chart's {crd['name']} holds something other than the {expected} CRDs",
        )
        validate_schemas(objects, crd["name"])


def check_defaults() -> None:
    rendered = template(None)
    check(
        rendered.kinds()
        == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment"]),
        f"default kinds {rendered.kinds()}",
    )
    check_namespaces(rendered, {NAMESPACE})
    check_rules_everywhere(rendered)
    cluster_role = rendered.one("ClusterRole")
    check_operator_rules(cluster_role)
    service_account = rendered.one("ServiceAccount")["metadata"]["name"]
    check(service_account == "lagless-operator", f"ServiceAccount {service_account}")
    check_binding(rendered.one("ClusterRoleBinding"), cluster_role, service_account)
    lease_role = rendered.one("Role")
    check(lease_role["metadata"]["namespace"] == NAMESPACE, "the lease Role is not in the release namespace")
    check_lease_role(lease_role, "lagless")
    check_binding(rendered.one("RoleBinding"), lease_role, service_account)

    deployment = check_operator_pod(rendered, port=9090)
    check(deployment["spec"]["replicas"] == 2, f"replicas {deployment['spec']['replicas']}")
    check(deployment["spec"]["strategy"]["type"] == "RollingUpdate", "strategy")
    container = operator_container(deployment)
    args = container["args"]
    check("--leader-election" in args, f"args {args}")
    check(flag(args, "--lease-name") == "lagless", f"args {args}")
    check(flag(args, "--watch-namespace") is None, f"args {args}")
    check(flag(args, "--proxy-image") == "ghcr.io/lagless-dev/lagless-proxy:0.1.0", f"args {args}")
    check(container["image"] == "ghcr.io/lagless-dev/lagless-operator:0.1.0", f"image {container['image']}")
    # The member pods' seeding agent comes from the operator's own image.
    check(flag(args, "--operator-image") == container["image"], f"args {args}")
    env = {e["name"]: e for e in container["env"]}
    check(env["LAGLESS_LOG"].get("value") == "info", f"LAGLESS_LOG {env['LAGLESS_LOG']}")
    check("mock transport only" in rendered.notes, "NOTES do not say how far the controller is proven")
    check(validate_schemas(rendered.objects, "defaults") == len(rendered.objects), "an object was skipped")

    # A ServiceMonitor is asked for but the cluster does not serve the API: none, and a warning.
    asked = template({"metrics": {"serviceMonitor": {"enabled": True}}})
    check(not asked.of_kind("ServiceMonitor"), "ServiceMonitor rendered without the API")
    check("WARNING" in asked.notes, "NOTES do not warn about the missing ServiceMonitor API")
    # The API is served but no ServiceMonitor is asked for: none.
    served = template(None, api_versions=[SERVICE_MONITOR_API])
    check(not served.of_kind("ServiceMonitor"), "ServiceMonitor rendered when not enabled")


def check_namespaced() -> None:
    values = load_values("namespaced.yaml")
    rendered = template(values, release="ops", api_versions=[SERVICE_MONITOR_API])
    check(
        rendered.kinds() == sorted(["ServiceAccount", "Role", "RoleBinding", "Service", "ServiceMonitor", "Deployment"]),
        f"namespaced kinds {rendered.kinds()}",
    )
    check_namespaces(rendered, {NAMESPACE, "shop"})
    check_rules_everywhere(rendered)
    role = rendered.one("Role")
    check(role["metadata"]["namespace"] == "shop", f"Role in {role['metadata']['namespace']}")
    check(role["metadata"]["name"] == "ops-lagless-operator", f"Role {role['metadata']['name']}")
    check_operator_rules(role)
    service_account = rendered.one("ServiceAccount")
    check(service_account["metadata"]["name"] == "shop-lagless", f"ServiceAccount {service_account['metadata']['name']}")
    check(service_account["metadata"]["annotations"] == {"example.com/owner": "databases"}, "ServiceAccount annotations")
    check_binding(rendered.one("RoleBinding"), role, "shop-lagless")

    deployment = check_operator_pod(rendered, port=9090)
    check(deployment["spec"]["replicas"] == 1, f"replicas {deployment['spec']['replicas']}")
    check(deployment["spec"]["strategy"] == {"type": "Recreate"}, f"strategy {deployment['spec']['strategy']}")
    container = operator_container(deployment)
    args = container["args"]
    check("--leader-election" not in args and "--lease-name" not in args, f"args {args}")
    check(flag(args, "--watch-namespace") == "shop", f"args {args}")
    check(container["resources"] == values["resources"], f"resources {container['resources']}")
    pod = deployment["spec"]["template"]["spec"]
    check(pod["nodeSelector"] == {"kubernetes.io/os": "linux"}, f"nodeSelector {pod.get('nodeSelector')}")
    check(pod["tolerations"] == values["tolerations"], f"tolerations {pod.get('tolerations')}")
    check("affinity" not in pod, "anti-affinity for a single replica")

    monitor = rendered.one("ServiceMonitor")
    check(monitor["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"], "ServiceMonitor selector")
    check(monitor["spec"]["endpoints"][0]["port"] == "metrics", "ServiceMonitor port")
    check(monitor["spec"]["endpoints"][0]["interval"] == "15s", "ServiceMonitor interval")
    check(monitor["metadata"]["labels"].get("release") == "prometheus", "ServiceMonitor labels")

    validated = validate_schemas(rendered.objects, "namespaced")
    check(validated == len(rendered.objects) - 1, "only the ServiceMonitor may be skipped")


def check_monitoring() -> None:
    rules = yaml.safe_load((CHART / "rules" / "lagless.rules.yaml").read_text())
    dashboard = json.loads((CHART / "dashboards" / "lagless.json").read_text())
    check(len(rules["groups"]) >= 3 and all(g["rules"] for g in rules["groups"]), "rule groups")
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    for alert in ["LaglessFailover", "LaglessReplicaBehind", "LaglessStrictReadFallbacks",
                  "LaglessBackendDown", "LaglessMemberProbesFailing", "LaglessSemiSyncOff"]:
        check(alert in alerts, f"no alert {alert}: {sorted(alerts)}")
    for group in rules["groups"]:
        for rule in group["rules"]:
            check(rule["labels"]["severity"] in {"info", "warning", "critical"}, f"severity of {rule['alert']}")
            check(rule["annotations"].get("summary"), f"no summary for {rule['alert']}")
    asked = {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
                         "grafanaDashboard": {"enabled": True}}}

    # Asked for, with the API: the rules file as the PrometheusRule's spec, and the dashboard.
    rendered = template(asked, api_versions=[SERVICE_MONITOR_API, PROMETHEUS_RULE_API])
    rule = rendered.one("PrometheusRule")
    check(rule["spec"] == rules, "the PrometheusRule differs from rules/lagless.rules.yaml")
    check(rule["metadata"]["namespace"] == NAMESPACE, "PrometheusRule namespace")
    check(rule["metadata"]["labels"].get("release") == "prometheus", "PrometheusRule labels")
    config_map = rendered.one("ConfigMap")
    check(config_map["metadata"]["labels"].get("grafana_dashboard") == "1", "dashboard label")
    check(json.loads(config_map["data"]["lagless.json"]) == dashboard, "the dashboard ConfigMap differs")
    check("WARNING" not in rendered.notes, "NOTES warn with the APIs served")
    validated = validate_schemas(rendered.objects, "monitoring")
    check(validated == len(rendered.objects) - 1, "only the PrometheusRule may be skipped")

    # Without the API: no PrometheusRule, and a warning. Not asked for: neither.
    rendered = template(asked)
    check(not rendered.of_kind("PrometheusRule"), "PrometheusRule rendered without the API")
    check("PrometheusRule" in rendered.notes, "NOTES do not warn about the missing PrometheusRule API")
    moved = template({"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}})
    check(moved.one("ConfigMap")["metadata"]["namespace"] == "monitoring", "dashboard namespace")
    plain = template(None, api_versions=[PROMETHEUS_RULE_API])
    check(not plain.of_kind("PrometheusRule") and not plain.of_kind("ConfigMap"), "rendered when not asked for")


def check_custom() -> None:
    values = load_values("custom.yaml")
    rendered = template(values, release="db")
    check(not rendered.of_kind("ServiceMonitor"), "ServiceMonitor rendered without the API")
    check("WARNING" in rendered.notes, "NOTES do not warn about the missing ServiceMonitor API")
    check_namespaces(rendered, {NAMESPACE})
    check_rules_everywhere(rendered)
    check_operator_rules(rendered.one("ClusterRole"))
    check_lease_role(rendered.one("Role"), "db-operator")

    deployment = check_operator_pod(rendered, port=9100)
    check(deployment["metadata"]["name"] == "db-operator-operator", f"Deployment {deployment['metadata']['name']}")
    check(deployment["spec"]["replicas"] == 3, f"replicas {deployment['spec']['replicas']}")
    container = operator_container(deployment)
    check(
        container["image"] == "registry.example.internal:5000/platform/lagless-operator:0.1.0-rc.1",
        f"image {container['image']}",
    )
    check(container["imagePullPolicy"] == "Always", "imagePullPolicy")
    args = container["args"]
    check(flag(args, "--proxy-image") == "registry.example.internal:5000/platform/lagless-proxy:0.1.0-rc.1", f"args {args}")
    check(
        flag(args, "--operator-image") == "registry.example.internal:5000/platform/lagless-operator:0.1.0-rc.1",
        f"args {args}",
    )
    check("--leader-election" in args and flag(args, "--lease-name") == "db-operator", f"args {args}")
    env = {e["name"]: e for e in container["env"]}
    check(env["LAGLESS_LOG"].get("value") == "lagless_operator=debug,info", f"LAGLESS_LOG {env['LAGLESS_LOG']}")
    pod_template = deployment["spec"]["template"]
    check(pod_template["metadata"]["annotations"] == {"example.com/scrape": "true"}, "pod annotations")
    check(pod_template["metadata"]["labels"].get("team") == "databases", "pod labels")
    pod = pod_template["spec"]
    check(pod["imagePullSecrets"] == [{"name": "registry-credentials"}], "imagePullSecrets")
    check(pod["priorityClassName"] == "system-cluster-critical", "priorityClassName")
    check(pod["affinity"] == values["affinity"], "the given affinity replaces the default")
    check(validate_schemas(rendered.objects, "custom") == len(rendered.objects), "an object was skipped")


def check_other_values() -> None:
    """Less common values render to valid objects too."""
    cases: list[dict[str, Any]] = [
        {"rbac": {"create": False}},
        {"serviceAccount": {"create": False, "name": "existing"}},
        {"replicaCount": 0},
        {"replicaCount": 1, "leaderElection": {"enabled": True}},
        {"nameOverride": "mysql-operator"},
        {"watchNamespace": NAMESPACE, "podSecurityContext": {}, "securityContext": {}, "resources": {}},
    ]
    for values in cases:
        rendered = template(values, release="other")
        check_rules_everywhere(rendered)
        validate_schemas(rendered.objects, json.dumps(values))
        deployment = rendered.one("Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        check(labels.get("app.kubernetes.io/part-of") == "lagless", f"{values}: pod labels {labels}")
        replicas = deployment["spec"]["replicas"]
        check(replicas == values.get("replicaCount", 2), f"{values}: replicas {replicas}")
        if values.get("rbac", {}).get("create") is False:
            check(not [o for o in rendered.objects if "Role" in o["kind"]], f"{values}: RBAC rendered")
        if "serviceAccount" in values:
            check(not rendered.of_kind("ServiceAccount"), f"{values}: ServiceAccount rendered")
            check(deployment["spec"]["template"]["spec"]["serviceAccountName"] == "existing", f"{values}")
            binding = rendered.one("ClusterRoleBinding")
            check(binding["subjects"][0]["name"] == "existing", f"{values}: binding {binding['subjects']}")
    message = refused({"serviceAccount": {"create": False}})
    check("serviceAccount.name" in message, f"serviceAccount.create=false without a name: {message}")


def check_refusals() -> None:
    message = refused(load_values("bad-types.yaml"))
    check("schema" in message.lower(), f"not a schema error: {message}")
    for field in ("replicaCount", "enabled", "port", "tag", "logLevel"):
        check(field in message, f"the schema error does not name {field}: {message}")
    with helm.Chart.load(CHART) as chart:
        try:
            chart.validate_schema(load_values("bad-types.yaml"))
        except helm.HelmValuesError:
            pass
        else:
            raise CheckFailed("values.schema.json accepted bad-types.yaml")
        chart.validate_schema(load_values("namespaced.yaml"))
        chart.validate_schema(load_values("custom.yaml"))
    for values, field in [
        ({"unknownKey": 1}, "unknownKey"),
        ({"watchNamespace": "Not_A_Namespace"}, "watchNamespace"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"metrics": {"port": 70000}}, "port"),
        ({"resources": {"requests": {"cpu": ["1"]}}}, "cpu"),
        ({"metrics": {"prometheusRule": {"enabled": "yes"}}}, "enabled"),
        ({"metrics": {"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}}, "grafana_dashboard"),
    ]:
        message = refused(values)
        check(field in message, f"the error for {values} does not name {field}: {message}")

    message = refused(load_values("bad-replicas.yaml"))
    check("leaderElection.enabled" in message, f"bad-replicas.yaml: {message}")

    message = refused_kube_version("1.27.0")
    check("kubeVersion" in message or "Kubernetes" in message, f"Kubernetes 1.27: {message}")


def refused_kube_version(version: str) -> str:
    try:
        template(None, kube_version=version)
    except helm.HelmError as error:
        return str(error)
    raise CheckFailed(f"the chart installed on Kubernetes {version}, below its kubeVersion")


def check_docs_manifests() -> None:
    """The manifests shown in docs/kubernetes.md (the proxy sidecar, the users Secrets of a
    cluster and of a tenant pool) are valid Kubernetes 1.37 objects and use the names the
    operator gives a cluster's and a pool's objects."""
    text = (REPO / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M)
    objects = [o for block in blocks for o in yaml.safe_load_all(block) if o]
    check(len(objects) >= 2, f"docs/kubernetes.md shows {len(objects)} manifests")
    check(validate_schemas(objects, "docs/kubernetes.md") == len(objects), "a docs manifest was skipped")
    app = next(o for o in objects if o["kind"] == "Deployment")
    pod = app["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    check(volumes["lagless-topology"]["configMap"]["name"] == "shop-topology", "topology ConfigMap name")
    check(volumes["lagless-users"]["secret"]["secretName"] == "shop-proxy-users", "users Secret name")
    sidecar = pod["initContainers"][0]
    check(sidecar.get("restartPolicy") == "Always", "the proxy is not a native sidecar")
    check(all("subPath" not in m for m in sidecar["volumeMounts"]), "subPath would freeze the topology")
    args = sidecar["args"]
    topology_dir = next(m["mountPath"] for m in sidecar["volumeMounts"] if m["name"] == "lagless-topology")
    check(flag(args, "--topology") == f"{topology_dir}/topology.json", f"--topology {args}")
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    # The users Secrets of the sidecar and of the tenant pool, named as the operator expects.
    for name in ("shop-proxy-users", "demo-proxy-users"):
        check(name in secrets and "users.json" in secrets[name]["stringData"], f"users Secret {name}")
        json.loads(secrets[name]["stringData"]["users.json"])


def check_rbac_least_privilege() -> None:
    """In every mode the chart renders, Secrets are never listed or watched and no rule has a
    wildcard; and the check does catch both."""
    for values in [None, load_values("namespaced.yaml"), load_values("custom.yaml")]:
        rendered = template(values)
        roles = rendered.of_kind("ClusterRole") + rendered.of_kind("Role")
        check(len(roles) >= 1, "no role rendered")
        for role in roles:
            check_least_privilege(role)
            for rule in role["rules"]:
                if "secrets" in rule["resources"]:
                    check(rule["verbs"] == ["get", "create", "patch"], f"secrets rule {rule}")
                    check(rule["apiGroups"] == [""], f"secrets rule {rule}")
    role = template(None).one("ClusterRole")
    for broken_rule in [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["watch"]},
        {"apiGroups": [""], "resources": ["*"], "verbs": ["get"]},
        {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
    ]:
        broken = copy.deepcopy(role)
        broken["rules"].append(broken_rule)
        try:
            check_least_privilege(broken)
        except CheckFailed:
            continue
        raise CheckFailed(f"check_least_privilege accepted {broken_rule}")


def check_validator_refuses() -> None:
    """The schema check is worth something only if a broken object fails it."""
    deployment = template(None).one("Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["notAField"] = 1
    try:
        validate_schemas([broken], "broken")
    except CheckFailed:
        pass
    else:
        raise CheckFailed("kubernetes-validate accepted a Deployment with an unknown field")
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "two"
    try:
        validate_schemas([broken], "broken")
    except CheckFailed:
        return
    raise CheckFailed("kubernetes-validate accepted a Deployment with replicas: \"two\"")


CHECKS: list[tuple[str, Callable[[], None]]] = [
    ("Helm engine is Helm v4", check_engine),
    ("helm lint --strict (defaults, namespaced.yaml, custom.yaml)", check_lint),
    ("chart CRDs equal crds/ and validate", check_crd_copy),
    ("defaults: ClusterRole, leader election, schemas", check_defaults),
    ("namespaced.yaml: Role, no leader election, ServiceMonitor", check_namespaced),
    ("custom.yaml: images, log level, port, replicas", check_custom),
    ("PrometheusRule and Grafana dashboard", check_monitoring),
    ("other values: no RBAC, existing ServiceAccount, 0 or 1 replica, overrides", check_other_values),
    ("bad values refused", check_refusals),
    ("RBAC: Secrets never listed or watched, no wildcard", check_rbac_least_privilege),
    ("docs/kubernetes.md manifests validate", check_docs_manifests),
    ("kubernetes-validate refuses a broken object", check_validator_refuses),
]


def main() -> int:
    started = time.monotonic()
    passed = failed = 0
    for name, run in CHECKS:
        try:
            run()
        except CheckFailed as failure:
            failed += 1
            print(f"FAIL {name}\n     {failure}")
        except Exception:  # an engine or parsing error is a failure, with its trace
            failed += 1
            print(f"FAIL {name}\n{traceback.format_exc()}")
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"helm-chart: {passed} passed, {failed} failed ({time.monotonic() - started:.2f}s)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
