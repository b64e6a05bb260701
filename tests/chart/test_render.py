"""The chart as rendered: lint, every certificate mode, the schema, the `helm test` Pod.

No cluster here: `helm lint` and `helm template` only (test_cluster.py sends the same
objects to a real API server).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.chart.helmtool import CHART, Helm, HelmFailed, b64, kinds, one
from tests.e2e.conftest import MATCH_ANNOTATED
from tests.server_harness import running_server
from webhook.tls import certs
from webhook.cli.main import load_policy
from webhook.cli.main import parser

RELEASE, NAMESPACE = "ep", "ml-system"
FULLNAME = "ep-vllm-ep-webhook"
EXISTING_CA = certs.new_ca("existing-ca").cert_pem
MODES: dict[str, dict[str, Any]] = {
    "selfManaged": {},
    "certManager": {"certificates": {"mode": "certManager"}},
    "helm": {"certificates": {"mode": "helm"}},
    "existingSecret": {"certificates": {"mode": "existingSecret", "existingSecret": "my-tls",
                                        "caBundle": b64(EXISTING_CA)}},
}
STANDARD_LABELS = {
    "app.kubernetes.io/name": "vllm-ep-webhook",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/version": "0.1.0",
    "app.kubernetes.io/managed-by": "Helm",
    "helm.sh/chart": "vllm-ep-webhook-0.1.0",
}


def render(helm: Helm, values: dict[str, Any] | None = None, *args: str) -> list[dict[str, Any]]:
    return helm.template(values, *args, release=RELEASE, namespace=NAMESPACE)


def failure(helm: Helm, values: dict[str, Any] | None = None, *args: str) -> str:
    with pytest.raises(HelmFailed) as e:
        render(helm, values, *args)
    return e.value.stderr


def deployment(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objs, "Deployment", FULLNAME)


def pod_spec(objs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(objs)["spec"]["template"]["spec"]
    return spec


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(objs)["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def webhook(objs: list[dict[str, Any]]) -> dict[str, Any]:
    config = one(objs, "MutatingWebhookConfiguration", FULLNAME)
    assert len(config["webhooks"]) == 1
    hook: dict[str, Any] = config["webhooks"][0]
    return hook


def flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} appears {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


def volumes(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod_spec(objs)["volumes"]}


def rules(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = one(objs, kind, FULLNAME)["rules"]
    return found


# --- lint -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_helm_lint_strict_passes_in_every_certificate_mode(helm: Helm, mode: str) -> None:
    out = helm.run("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--values", helm.values_file(MODES[mode]))
    assert "0 chart(s) failed" in out


def test_helm_lint_strict_passes_with_every_optional_part_on(helm: Helm) -> None:
    values = {"serviceMonitor": {"enabled": True}, "networkPolicy": {"enabled": True},
              "priorityClassName": "system-cluster-critical", "policy": {"optInOnly": False}}
    helm.run("lint", "--strict", str(CHART), "--values", helm.values_file(values))


# --- the server Deployment --------------------------------------------------------------


def test_the_pods_run_as_non_root_with_a_read_only_root_and_no_capabilities(helm: Helm) -> None:
    objs = render(helm)
    assert pod_spec(objs)["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    sc = container(objs)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container(objs)["volumeMounts"]
    assert "emptyDir" in volumes(objs)["tmp"]


def test_the_deployment_has_two_replicas_resources_and_a_graceful_termination(helm: Helm) -> None:
    objs = render(helm)
    dep = deployment(objs)
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container(objs)["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                            "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert pod_spec(objs)["terminationGracePeriodSeconds"] == 30
    assert "priorityClassName" not in pod_spec(objs)
    assert container(objs)["image"] == "vllm-ep-webhook:0.1.0"
    assert container(objs)["imagePullPolicy"] == "IfNotPresent"


def test_probes_are_https_on_8443_healthz_and_readyz(helm: Helm) -> None:
    c = container(render(helm))
    assert c["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8443, "scheme": "HTTPS"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8443, "scheme": "HTTPS"}


def test_replicas_spread_over_nodes_and_a_pdb_keeps_one_up(helm: Helm) -> None:
    objs = render(helm)
    (spread,) = pod_spec(objs)["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"] == deployment(objs)["spec"]["selector"]["matchLabels"]
    pdb = one(objs, "PodDisruptionBudget", FULLNAME)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment(objs)["spec"]["selector"]
    assert "PodDisruptionBudget" not in kinds(render(helm, {"replicaCount": 1}))


def test_scheduling_values_pass_through_to_the_pod(helm: Helm) -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["infra"]}]}]}}}
    tolerations = [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}]
    objs = render(helm, {"nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": tolerations,
                         "affinity": affinity, "priorityClassName": "system-cluster-critical",
                         "podAnnotations": {"example.com/team": "ml"}, "image": {"tag": "0.1.1"}})
    spec = pod_spec(objs)
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"] == tolerations
    assert spec["affinity"] == affinity
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert deployment(objs)["spec"]["template"]["metadata"]["annotations"]["example.com/team"] == "ml"
    assert container(objs)["image"] == "vllm-ep-webhook:0.1.1"


def test_every_object_carries_the_standard_labels(helm: Helm) -> None:
    for mode, values in MODES.items():
        for obj in render(helm, {**values, "serviceMonitor": {"enabled": True}, "networkPolicy": {"enabled": True}}):
            labels = obj["metadata"]["labels"]
            assert STANDARD_LABELS.items() <= labels.items(), (mode, obj["kind"], labels)


def test_the_service_maps_443_to_the_https_port_of_the_server_pods_only(helm: Helm) -> None:
    objs = render(helm)
    svc = one(objs, "Service", FULLNAME)
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]
    selector = svc["spec"]["selector"]
    assert selector.items() <= deployment(objs)["spec"]["template"]["metadata"]["labels"].items()
    test_pod = one(objs, "Pod")
    assert not selector.items() <= test_pod["metadata"]["labels"].items(), "the test Pod must not become an endpoint"


# --- arguments and the policy -------------------------------------------------------------


def test_the_server_arguments_name_the_cert_dir_port_host_and_policy_file(helm: Helm) -> None:
    objs = render(helm, MODES["helm"])
    args = container(objs)["args"]
    assert "command" not in container(objs), "the image's ENTRYPOINT is ep-webhook serve"
    assert flag(args, "--cert-dir") == "/etc/webhook/certs"
    assert flag(args, "--port") == "8443"
    assert flag(args, "--host") == "0.0.0.0"
    assert flag(args, "--policy") == "/etc/webhook/policy/policy.yaml"
    assert "--self-managed" not in args
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    assert mounts["policy"]["mountPath"] == "/etc/webhook/policy"
    assert "subPath" not in mounts["policy"], "a subPath mount would never see a policy update"
    assert volumes(objs)["policy"]["configMap"]["name"] == f"{FULLNAME}-policy"


def test_self_managed_mode_passes_the_secret_service_and_webhook_configuration(helm: Helm) -> None:
    objs = render(helm)
    args = container(objs)["args"]
    assert "--self-managed" in args
    assert flag(args, "--secret-name") == f"{FULLNAME}-tls"
    assert flag(args, "--namespace") == NAMESPACE
    assert flag(args, "--service") == FULLNAME
    assert flag(args, "--mutating-webhook-config") == FULLNAME
    assert "--validating-webhook-config" not in args
    assert volumes(objs)["certs"]["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("mode", MODES)
def test_ep_webhook_serve_accepts_every_argument_the_chart_passes(helm: Helm, mode: str) -> None:
    args = container(render(helm, MODES[mode]))["args"]
    try:
        ns = parser().parse_args(["serve", *args])
    except SystemExit:
        pytest.fail(f"ep-webhook serve refuses the chart's arguments {args}")
    assert (ns.cert_dir, ns.port, ns.host) == ("/etc/webhook/certs", 8443, "0.0.0.0")
    assert ns.policy == "/etc/webhook/policy/policy.yaml"
    assert ns.kubeconfig is None, "in a pod the server uses its service account"
    assert ns.self_managed == (mode == "selfManaged")


def test_the_policy_configmap_holds_the_policy_values_and_its_checksum_rolls_the_pods(helm: Helm) -> None:
    objs = render(helm)
    policy = yaml.safe_load(one(objs, "ConfigMap", f"{FULLNAME}-policy")["data"]["policy.yaml"])
    assert policy == {
        "defaults": {"mode": "optIn", "allowOptOut": True, "onConflict": "override", "tensorParallelSize": 1,
                     "maxDataParallelSize": 64, "sharedMemory": "add", "sharedMemorySize": "8Gi",
                     "gpuResources": ["nvidia.com/gpu", "amd.com/gpu", "intel.com/gpu", "habana.ai/gaudi",
                                      "nvidia.com/gpualloc"],
                     "gpuDeviceClasses": ["gpu.nvidia.com", "gpu.amd.com", "gpu.intel.com"]},
        "rules": [],
    }
    custom = copy.deepcopy(policy)
    custom["defaults"]["maxDataParallelSize"] = 16
    custom["rules"] = [{"namespaces": ["research"], "mode": "optIn", "onConflict": "reject"}]
    changed = render(helm, {"policy": {"config": custom}})
    assert yaml.safe_load(one(changed, "ConfigMap", f"{FULLNAME}-policy")["data"]["policy.yaml"]) == custom

    def checksum(o: list[dict[str, Any]]) -> str:
        return str(deployment(o)["spec"]["template"]["metadata"]["annotations"]["checksum/policy"])

    assert checksum(objs) == checksum(render(helm))
    assert checksum(objs) != checksum(changed)


def test_enforce_or_forbid_rules_need_opt_in_only_turned_off(helm: Helm) -> None:
    enforce = {"policy": {"config": {"defaults": {"mode": "optIn"},
                                     "rules": [{"namespaces": ["prod"], "mode": "enforce"}]}}}
    assert "set policy.optInOnly=false" in failure(helm, enforce)
    hook = webhook(render(helm, {"policy": {**enforce["policy"], "optInOnly": False}}))
    assert "matchConditions" not in hook


def test_the_default_policy_is_one_the_server_loads(helm: Helm, tmp_path: Path) -> None:
    objs = render(helm)
    text = one(objs, "ConfigMap", f"{FULLNAME}-policy")["data"]["policy.yaml"]
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    policy = load_policy(str(path))
    assert policy.opt_in_only


@pytest.mark.parametrize("rules", [
    [],
    [{"namespaces": ["research-*"], "onConflict": "reject"}],
    [{"namespaces": ["prod"], "mode": "enforce"}],
    [{"namespaceSelector": {"matchLabels": {"ep": "off"}}, "mode": "forbid"}],
])
def test_the_chart_refuses_opt_in_only_exactly_when_the_server_says_the_policy_is_not(
    helm: Helm, tmp_path: Path, rules: list[dict[str, Any]]
) -> None:
    config = {"defaults": {"mode": "optIn"}, "rules": rules}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(config))
    server_says = load_policy(str(tmp_path / "policy.yaml")).opt_in_only
    try:
        render(helm, {"policy": {"config": config}})
        chart_accepts = True
    except HelmFailed as e:
        assert "policy.optInOnly=false" in e.stderr
        chart_accepts = False
    assert chart_accepts == server_says


# --- the webhook configuration ------------------------------------------------------------


def test_the_webhook_sends_inferenceservice_and_llminferenceservice_writes_to_the_service(helm: Helm) -> None:
    objs = render(helm)
    hook = webhook(objs)
    assert hook["name"] == "ep.vllm-ep-webhook.io"
    assert hook["clientConfig"] == {"service": {"name": FULLNAME, "namespace": NAMESPACE, "path": "/mutate", "port": 443}}
    assert hook["rules"] == [{"apiGroups": ["serving.kserve.io"], "apiVersions": ["v1beta1"],
                              "operations": ["CREATE", "UPDATE"], "resources": ["inferenceservices"],
                              "scope": "Namespaced"},
                             {"apiGroups": ["serving.kserve.io"], "apiVersions": ["v1alpha1", "v1alpha2"],
                              "operations": ["CREATE", "UPDATE"], "resources": ["llminferenceservices"],
                              "scope": "Namespaced"}]
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["timeoutSeconds"] == 5
    assert hook["failurePolicy"] == "Fail"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    tuned = webhook(render(helm, {"webhook": {"timeoutSeconds": 10, "failurePolicy": "Ignore"}}))
    assert (tuned["timeoutSeconds"], tuned["failurePolicy"]) == (10, "Ignore")


def test_opt_in_only_sends_just_annotated_objects_with_the_e2e_tested_condition(helm: Helm) -> None:
    hook = webhook(render(helm))
    assert hook["matchConditions"] == [{"name": "ep-annotated", "expression": MATCH_ANNOTATED}]
    assert "matchConditions" not in webhook(render(helm, {"policy": {"optInOnly": False}}))


def test_kube_system_and_the_release_namespace_are_never_sent_and_user_selectors_merge(helm: Helm) -> None:
    not_in = {"key": "kubernetes.io/metadata.name", "operator": "NotIn"}
    assert webhook(render(helm))["namespaceSelector"] == {"matchExpressions": [{**not_in, "values": ["kube-system", NAMESPACE]}]}
    user = {"matchLabels": {"ep-webhook": "on"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu"]}]}
    hook = webhook(render(helm, {"webhook": {"namespaceSelector": user, "excludeNamespaces": ["kube-public", "kube-system"],
                                             "objectSelector": {"matchLabels": {"team": "ml"}}}}))
    assert hook["namespaceSelector"] == {
        "matchLabels": {"ep-webhook": "on"},
        "matchExpressions": [{**not_in, "values": ["kube-system", NAMESPACE, "kube-public"]},
                             {"key": "tier", "operator": "In", "values": ["gpu"]}],
    }
    assert hook["objectSelector"] == {"matchLabels": {"team": "ml"}}


# --- certificates, mode by mode -----------------------------------------------------------


def test_self_managed_mode_leaves_ca_bundle_to_the_server_and_grants_exactly_its_rbac(helm: Helm) -> None:
    objs = render(helm)
    assert "caBundle" not in webhook(objs)["clientConfig"], "an empty caBundle would undo the server's on upgrade"
    assert not [o for o in objs if o["kind"] == "Secret"], "the server creates the Secret"
    assert rules(objs, "Role") == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"], "resourceNames": [f"{FULLNAME}-tls"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    assert one(objs, "Role", FULLNAME)["metadata"]["namespace"] == NAMESPACE
    assert rules(objs, "ClusterRole") == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["serving.kserve.io"], "resources": ["servingruntimes", "clusterservingruntimes", "llminferenceserviceconfigs"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaimtemplates"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices", "llminferenceservices"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["openreports.io"], "resources": ["reports"], "verbs": ["list", "create", "update", "delete"]},
        {"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports"],
         "verbs": ["list", "create", "update", "delete"]},
        {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
         "verbs": ["get", "update"], "resourceNames": [FULLNAME]},
    ]
    sa = one(objs, "ServiceAccount", FULLNAME)
    for binding, kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        b = one(objs, binding, FULLNAME)
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": FULLNAME}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]
    assert pod_spec(objs)["serviceAccountName"] == FULLNAME


@pytest.mark.parametrize("mode", ["certManager", "helm", "existingSecret"])
def test_other_modes_mount_the_tls_secret_and_grant_only_the_policy_reads(helm: Helm, mode: str) -> None:
    objs = render(helm, MODES[mode])
    secret = "my-tls" if mode == "existingSecret" else f"{FULLNAME}-tls"
    assert volumes(objs)["certs"]["secret"] == {"secretName": secret, "defaultMode": 0o440}
    assert not [o for o in objs if o["kind"] in ("Role", "RoleBinding")]
    assert [r["resources"] for r in rules(objs, "ClusterRole")] == [
        ["namespaces"], ["servingruntimes", "clusterservingruntimes", "llminferenceserviceconfigs"], ["resourceclaimtemplates"],
        ["inferenceservices", "llminferenceservices"], ["reports"], ["policyreports"]]
    assert "--self-managed" not in container(objs)["args"]


def test_the_audit_runs_every_10_minutes_by_default_and_0_turns_it_and_its_rbac_off(helm: Helm) -> None:
    args = container(render(helm))["args"]
    assert args[args.index("--audit-interval") + 1] == "10m"
    off = render(helm, {"audit": {"interval": 0}})
    off_args = container(off)["args"]
    assert off_args[off_args.index("--audit-interval") + 1] == "0"
    assert all("inferenceservices" not in r["resources"] for r in rules(off, "ClusterRole"))
    assert "audit.interval" in failure(helm, {"audit": {"interval": "ten minutes"}}).replace("/", ".")
    assert not {"openreports.io", "wgpolicyk8s.io"} & {g for r in rules(off, "ClusterRole") for g in r["apiGroups"]}


def test_the_upgrade_readiness_target_is_passed_on_only_when_set(helm: Helm) -> None:
    assert "--audit-vllm-version" not in container(render(helm))["args"]
    args = container(render(helm, {"audit": {"vllmVersion": "0.33.0"}}))["args"]
    assert args[args.index("--audit-vllm-version") + 1] == "0.33.0"
    assert "audit.vllmVersion" in failure(helm, {"audit": {"vllmVersion": "latest"}}).replace("/", ".")


@pytest.mark.parametrize(("choice", "groups"), [
    ("auto", {"openreports.io": ["reports"], "wgpolicyk8s.io": ["policyreports"]}),
    ("openreports", {"openreports.io": ["reports"]}),
    ("wgpolicy", {"wgpolicyk8s.io": ["policyreports"]}),
    ("none", {}),
])
def test_the_audit_reports_api_is_passed_on_and_granted_exactly_the_report_kind_written(
    helm: Helm, choice: str, groups: dict[str, list[str]]
) -> None:
    objs = render(helm, {"audit": {"reports": choice}})
    args = container(objs)["args"]
    assert args[args.index("--audit-reports") + 1] == choice
    granted = {r["apiGroups"][0]: r for r in rules(objs, "ClusterRole")
               if r["apiGroups"][0] in ("openreports.io", "wgpolicyk8s.io")}
    assert {g: r["resources"] for g, r in granted.items()} == groups
    assert all(r["verbs"] == ["list", "create", "update", "delete"] and "resourceNames" not in r
               for r in granted.values())
    assert not [o for o in objs if o["kind"] == "CustomResourceDefinition"], "the chart never installs their CRDs"
    assert "audit.reports" in failure(helm, {"audit": {"reports": "kyverno"}}).replace("/", ".")


def test_the_grafana_dashboard_is_off_by_default_and_labelled_for_the_sidecar(helm: Helm) -> None:
    assert not [o for o in render(helm) if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("dashboard")]
    cm = one(render(helm, {"grafana": {"dashboard": {"enabled": True, "namespace": "monitoring",
                                                     "annotations": {"grafana_folder": "vLLM"}}}}),
             "ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "vLLM"}
    dashboard = json.loads(cm["data"]["vllm-ep-webhook.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "vllm-ep-webhook.json").read_text())
    custom = render(helm, {"grafana": {"dashboard": {"enabled": True, "labels": {"dashboards": "webhooks"}}}})
    assert one(custom, "ConfigMap", f"{FULLNAME}-dashboard")["metadata"]["labels"]["dashboards"] == "webhooks"


def test_the_prometheus_rule_is_off_by_default_and_alerts_on_change_deny_or_error_counts(helm: Helm) -> None:
    assert not [o for o in render(helm) if o["kind"] == "PrometheusRule"]
    rule = one(render(helm, {"prometheusRule": {"enabled": True, "for": "30m"}}), "PrometheusRule", FULLNAME)
    [alert] = rule["spec"]["groups"][0]["rules"]
    assert 'ep_webhook_audit_objects{result=~"change|deny|error"}' in alert["expr"] and alert["for"] == "30m"
    assert "{{ $labels.namespace }}" in alert["annotations"]["description"]


def test_helm_mode_generates_a_ca_and_a_serving_certificate_for_the_service_names(helm: Helm) -> None:
    objs = render(helm, MODES["helm"])
    secret = one(objs, "Secret", f"{FULLNAME}-tls")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    serving = x509.load_pem_x509_certificate(data["tls.crt"])
    serving.verify_directly_issued_by(ca)
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == certs.service_names(FULLNAME, NAMESPACE)
    assert webhook(objs)["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]


def test_cert_manager_mode_bootstraps_a_ca_issues_the_serving_cert_and_injects_its_ca(helm: Helm) -> None:
    objs = render(helm, MODES["certManager"])
    config = one(objs, "MutatingWebhookConfiguration", FULLNAME)
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{FULLNAME}-serving"
    assert "caBundle" not in webhook(objs)["clientConfig"]
    assert one(objs, "Issuer", f"{FULLNAME}-selfsigned")["spec"] == {"selfSigned": {}}
    ca = one(objs, "Certificate", f"{FULLNAME}-ca")["spec"]
    assert ca["isCA"] is True
    assert ca["issuerRef"]["name"] == f"{FULLNAME}-selfsigned"
    assert one(objs, "Issuer", f"{FULLNAME}-ca")["spec"] == {"ca": {"secretName": ca["secretName"]}}
    serving = one(objs, "Certificate", f"{FULLNAME}-serving")
    assert serving["apiVersion"] == "cert-manager.io/v1"
    assert serving["spec"]["secretName"] == f"{FULLNAME}-tls"
    assert serving["spec"]["dnsNames"] == certs.service_names(FULLNAME, NAMESPACE)
    assert serving["spec"]["issuerRef"] == {"name": f"{FULLNAME}-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert "server auth" in serving["spec"]["usages"]
    for o in objs:
        if o["apiVersion"].startswith("cert-manager.io/"):
            assert o["metadata"]["namespace"] == NAMESPACE


def test_cert_manager_mode_can_use_an_existing_cluster_issuer(helm: Helm) -> None:
    objs = render(helm, {"certificates": {"mode": "certManager",
                                          "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}})
    assert [o["metadata"]["name"] for o in objs if o["apiVersion"].startswith("cert-manager.io/")] == [f"{FULLNAME}-serving"]
    serving = one(objs, "Certificate", f"{FULLNAME}-serving")
    assert serving["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_existing_secret_mode_uses_the_given_secret_and_ca_bundle(helm: Helm) -> None:
    objs = render(helm, MODES["existingSecret"])
    assert webhook(objs)["clientConfig"]["caBundle"] == b64(EXISTING_CA)
    assert not [o for o in objs if o["kind"] == "Secret"]
    ca = one(objs, "ConfigMap", f"{FULLNAME}-ca")
    assert ca["data"]["ca.crt"].strip() == EXISTING_CA.decode().strip()


def test_existing_secret_mode_without_its_values_fails_with_a_clear_message(helm: Helm) -> None:
    no_secret = failure(helm, {"certificates": {"mode": "existingSecret"}})
    assert "certificates.existingSecret is required with certificates.mode=existingSecret" in no_secret
    no_ca = failure(helm, {"certificates": {"mode": "existingSecret", "existingSecret": "my-tls"}})
    assert "certificates.caBundle is required with certificates.mode=existingSecret" in no_ca
    not_pem = failure(helm, {"certificates": {"mode": "existingSecret", "existingSecret": "my-tls",
                                              "caBundle": b64(b"not a certificate")}})
    assert "certificates.caBundle must be base64 of PEM certificates" in not_pem
    stray = failure(helm, {"certificates": {"existingSecret": "my-tls"}})
    assert "only used with certificates.mode=existingSecret" in stray


# --- the schema -------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "replicaCount=two"], "/replicaCount': got string, want integer"),
    (["--set", "replicaCount=0"], "/replicaCount': minimum"),
    (["--set", "replicaCount=1.5"], "/replicaCount'"),
    (["--set", "certificates.mode=vault"], "/certificates/mode': value must be one of"),
    (["--set", "webhook.failurePolicy=Never"], "/webhook/failurePolicy': value must be one of"),
    (["--set", "webhook.timeoutSeconds=31"], "/webhook/timeoutSeconds': maximum"),
    (["--set", "webhook.timeoutSeconds=0"], "/webhook/timeoutSeconds': minimum"),
    (["--set", "policy.optInOnly=yes please"], "/policy/optInOnly': got string, want boolean"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy'"),
    (["--set", "certificate.mode=helm"], "additional properties 'certificate' not allowed"),
    (["--set", "webhook.namespaceSelector.matchExpressions[0].key=x",
      "--set", "webhook.namespaceSelector.matchExpressions[0].operator=Near"], "operator"),
])
def test_the_schema_rejects_wrong_values(helm: Helm, args: list[str], message: str) -> None:
    err = failure(helm, None, *args)
    assert "values don't meet the specifications of the schema" in err, err
    assert message in err, err


def test_the_schema_is_valid_json_and_documents_the_certificate_modes() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    modes = schema["properties"]["certificates"]["properties"]["mode"]["enum"]
    assert modes == list(MODES)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) <= set(schema["properties"])


# --- optional objects -------------------------------------------------------------------


def test_service_monitor_scrapes_metrics_over_https_trusting_the_webhook_ca(helm: Helm) -> None:
    assert "ServiceMonitor" not in kinds(render(helm))
    monitor = one(render(helm, {"serviceMonitor": {"enabled": True}}), "ServiceMonitor", FULLNAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == ("https", "https", "/metrics")
    assert endpoint["tlsConfig"] == {"serverName": f"{FULLNAME}.{NAMESPACE}.svc",
                                     "ca": {"secret": {"name": f"{FULLNAME}-tls", "key": "ca.crt"}}}
    existing = one(render(helm, {**MODES["existingSecret"], "serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    assert existing["spec"]["endpoints"][0]["tlsConfig"]["ca"] == {"configMap": {"name": f"{FULLNAME}-ca", "key": "ca.crt"}}
    skip = one(render(helm, {"serviceMonitor": {"enabled": True, "insecureSkipVerify": True}}), "ServiceMonitor")
    assert skip["spec"]["endpoints"][0]["tlsConfig"] == {"insecureSkipVerify": True}


def test_network_policy_admits_port_8443_from_anywhere_unless_narrowed(helm: Helm) -> None:
    assert "NetworkPolicy" not in kinds(render(helm))
    policy = one(render(helm, {"networkPolicy": {"enabled": True}}), "NetworkPolicy", FULLNAME)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8443, "protocol": "TCP"}]}]
    source = [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    narrowed = one(render(helm, {"networkPolicy": {"enabled": True, "from": source}}), "NetworkPolicy")
    assert narrowed["spec"]["ingress"][0]["from"] == source


# --- the helm test Pod ------------------------------------------------------------------


def hook_pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objs, "Pod", f"{FULLNAME}-test")


@pytest.mark.parametrize("mode", MODES)
def test_the_helm_test_pod_is_a_non_root_read_only_hook_using_the_webhook_image_and_ca(helm: Helm, mode: str) -> None:
    objs = render(helm, MODES[mode])
    pod = hook_pod(objs)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    (c,) = spec["containers"]
    assert c["image"] == container(objs)["image"]
    assert c["command"][:2] == ["python", "-c"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["WEBHOOK_URL"] == f"https://{FULLNAME}.{NAMESPACE}.svc:443/mutate"
    ca = {v["name"]: v for v in spec["volumes"]}["ca"]
    if mode == "existingSecret":
        assert ca["configMap"]["name"] == f"{FULLNAME}-ca"
    else:
        assert ca["secret"]["secretName"] == f"{FULLNAME}-tls"
    assert "Pod" not in kinds(render(helm, {"tests": {"enabled": False}}))


def test_the_helm_test_script_gets_allowed_true_from_the_real_server(helm: Helm, tmp_path: Path) -> None:
    pod = hook_pod(render(helm))
    (c,) = pod["spec"]["containers"]
    cert_dir = tmp_path / "certs"
    certs.write_bundle(cert_dir, certs.generate(["localhost", "127.0.0.1"]))
    with running_server(cert_dir, tmp_path / "server.log") as server:
        env = {**os.environ, **{e["name"]: e["value"] for e in c["env"]},
               "WEBHOOK_URL": f"https://localhost:{server.port}/mutate", "CA_FILE": str(server.ca())}
        done = subprocess.run([sys.executable, *c["command"][1:]], capture_output=True, text=True, env=env,
                              timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"allowed":true' in done.stdout
    assert "ok: the webhook allowed" in done.stdout


def test_the_chart_readme_lists_every_top_level_value() -> None:
    readme = (CHART / "README.md").read_text()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in defaults:
        assert f"`{key}" in readme, key
