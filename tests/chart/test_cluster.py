"""The chart against a real kube-apiserver (the e2e harness): schemas, install, upgrade, RBAC.

There is no kubelet or scheduler, so no pod ever runs: installs go without --wait and
`helm test` is not run. Every release here gets its own namespace, a name unlike the e2e
webhook's, and a namespaceSelector no other test's namespace matches, and is uninstalled
in a `finally`, so other tests on the same API server never meet its webhook.
"""

from __future__ import annotations

import base64
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from tests.chart.helmtool import CHART, Helm, HelmFailed, one
from tests.chart.test_render import EXISTING_CA, MODES
from tests.e2e.cluster import Cluster
from tests.e2e.conftest import new_client
from tests.server_harness import annotated, review_for, running_server
from webhook.tls import certs

# Only namespaces with this label could ever be sent to an installed release's webhook; none has it.
ISOLATED = {"webhook": {"namespaceSelector": {"matchLabels": {"vllm-ep-webhook.io/chart-test": "never-set"}}}}
# Kinds whose CRDs the test API server does not have: checked field by field in test_render.py.
NO_CRD = ("cert-manager.io/", "monitoring.coreos.com/")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture()
def namespace(api: client.ApiClient) -> str:
    name = unique("chart")
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def dry_run_create(dyn: dynamic.DynamicClient, obj: dict[str, Any]) -> None:
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    namespace = obj["metadata"].get("namespace") if resource.namespaced else None
    resource.create(body=obj, namespace=namespace,
                    query_params=[("dryRun", "All"), ("fieldValidation", "Strict")])


@pytest.mark.parametrize("mode", MODES)
def test_every_rendered_object_passes_a_strict_server_side_dry_run(
    helm: Helm, api: client.ApiClient, namespace: str, mode: str
) -> None:
    values = merge(MODES[mode], {"serviceMonitor": {"enabled": True}, "networkPolicy": {"enabled": True},
                                 "priorityClassName": "system-cluster-critical"})
    objs = helm.template(values, release="dry", namespace=namespace)
    dyn = dynamic.DynamicClient(api)
    checked = []
    for obj in objs:
        if obj["apiVersion"].startswith(NO_CRD):
            continue
        try:
            dry_run_create(dyn, obj)
        except ApiException as e:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} rejected: {e.status} {e.body}")
        checked.append(obj["kind"])
    assert {"Deployment", "Service", "MutatingWebhookConfiguration", "ClusterRole", "Pod",
            "NetworkPolicy", "PodDisruptionBudget", "ConfigMap"} <= set(checked)


# --- install, upgrade, uninstall --------------------------------------------------------------


class Release:
    def __init__(self, helm: Helm, cluster: Cluster, api: client.ApiClient, name: str, namespace: str) -> None:
        self.helm, self.cluster, self.api, self.name, self.namespace = helm, cluster, api, name, namespace
        self.fullname = f"{name}-vllm-ep-webhook"
        self.installed = False

    def helm_run(self, *args: str) -> str:
        return self.helm.run(*args, "--namespace", self.namespace, "--kubeconfig", str(self.cluster.kubeconfig))

    def install(self, values: dict[str, Any]) -> str:
        self.installed = True
        return self.helm_run("install", self.name, str(CHART), "--values", self.helm.values_file(values), "--timeout", "60s")

    def upgrade(self, values: dict[str, Any]) -> None:
        self.helm_run("upgrade", self.name, str(CHART), "--values", self.helm.values_file(values), "--timeout", "60s")

    def uninstall(self) -> None:
        if self.installed:
            self.installed = False
            self.helm_run("uninstall", self.name, "--timeout", "60s")

    def webhook_config(self) -> client.V1MutatingWebhookConfiguration:
        return client.AdmissionregistrationV1Api(self.api).read_mutating_webhook_configuration(self.fullname)

    def secret(self) -> dict[str, bytes]:
        s = client.CoreV1Api(self.api).read_namespaced_secret(f"{self.fullname}-tls", self.namespace)
        return {k: base64.b64decode(v) for k, v in (s.data or {}).items()}


@contextlib.contextmanager
def release(helm: Helm, cluster: Cluster, api: client.ApiClient, namespace: str) -> Iterator[Release]:
    r = Release(helm, cluster, api, unique("chart"), namespace)
    try:
        yield r
    finally:
        try:
            r.uninstall()
        except HelmFailed:
            pass
        # A failed uninstall must not leave a webhook behind for the tests that follow.
        with contextlib.suppress(ApiException):
            client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(r.fullname)


def ca_bundle(config: client.V1MutatingWebhookConfiguration) -> bytes:
    (hook,) = config.webhooks
    return base64.b64decode(hook.client_config.ca_bundle or "")


def test_helm_mode_installs_and_an_upgrade_keeps_the_certificate(
    helm: Helm, cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    values = merge(ISOLATED, MODES["helm"])
    with release(helm, cluster, api, namespace) as r:
        notes = r.install(values)
        assert f"helm test {r.name} -n {namespace}" in notes
        assert "Helm generated the CA and serving certificate" in notes
        apps, core, rbac = client.AppsV1Api(api), client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        assert apps.read_namespaced_deployment(r.fullname, namespace).spec.replicas == 2
        assert core.read_namespaced_service(r.fullname, namespace).spec.ports[0].port == 443
        core.read_namespaced_config_map(f"{r.fullname}-policy", namespace)
        core.read_namespaced_service_account(r.fullname, namespace)
        rbac.read_cluster_role(r.fullname)
        rbac.read_cluster_role_binding(r.fullname)
        with pytest.raises(ApiException) as gone:
            core.read_namespaced_pod(f"{r.fullname}-test", namespace)
        assert gone.value.status == 404, "helm test hooks run only on `helm test`"

        before = r.secret()
        config = r.webhook_config()
        assert ca_bundle(config) == before["ca.crt"]
        assert config.webhooks[0].client_config.service.name == r.fullname
        serving = x509.load_pem_x509_certificate(before["tls.crt"])
        serving.verify_directly_issued_by(x509.load_pem_x509_certificate(before["ca.crt"]))

        r.upgrade(merge(values, {"replicaCount": 3, "webhook": {"timeoutSeconds": 9}}))
        assert apps.read_namespaced_deployment(r.fullname, namespace).spec.replicas == 3
        after = r.secret()
        assert after["tls.crt"] == before["tls.crt"]
        assert after["tls.key"] == before["tls.key"]
        assert after["ca.crt"] == before["ca.crt"]
        config = r.webhook_config()
        assert config.webhooks[0].timeout_seconds == 9
        assert ca_bundle(config) == before["ca.crt"]
        assert "REVISION: 2" in r.helm_run("status", r.name)

        r.uninstall()
        with pytest.raises(ApiException) as deleted:
            r.webhook_config()
        assert deleted.value.status == 404
        with pytest.raises(ApiException) as deleted:
            rbac.read_cluster_role(r.fullname)
        assert deleted.value.status == 404


def test_helm_mode_re_signs_a_certificate_close_to_expiry_with_the_same_ca_on_upgrade(
    helm: Helm, cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    values = merge(ISOLATED, MODES["helm"])
    with release(helm, cluster, api, namespace) as r:
        r.install(values)
        before = r.secret()
        soon = str(int(time.time()) + 86400)  # within renewBeforeDays (30)
        client.CoreV1Api(api).patch_namespaced_secret(
            f"{r.fullname}-tls", namespace, {"metadata": {"annotations": {"vllm-ep-webhook.io/not-after": soon}}})
        r.upgrade(values)
        after = r.secret()
        assert after["ca.crt"] == before["ca.crt"]
        assert after["tls.crt"] != before["tls.crt"]
        x509.load_pem_x509_certificate(after["tls.crt"]).verify_directly_issued_by(
            x509.load_pem_x509_certificate(after["ca.crt"]))
        assert ca_bundle(r.webhook_config()) == before["ca.crt"]


def test_helm_mode_reuses_a_certificate_secret_it_finds_as_it_is(
    helm: Helm, cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    with release(helm, cluster, api, namespace) as r:
        bundle = certs.generate(certs.service_names(r.fullname, namespace))
        data = {"ca.crt": bundle.ca.cert_pem, "ca.key": bundle.ca.key_pem,
                "tls.crt": bundle.serving.cert_pem, "tls.key": bundle.serving.key_pem}
        client.CoreV1Api(api).create_namespaced_secret(namespace, {
            "metadata": {"name": f"{r.fullname}-tls",
                         # what lets Helm adopt an object it did not create
                         "labels": {"app.kubernetes.io/managed-by": "Helm"},
                         "annotations": {"meta.helm.sh/release-name": r.name,
                                         "meta.helm.sh/release-namespace": namespace}},
            "type": "kubernetes.io/tls",
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        })
        r.install(merge(ISOLATED, MODES["helm"]))
        assert r.secret() == data
        assert ca_bundle(r.webhook_config()) == bundle.ca.cert_pem


def test_existing_secret_mode_installs_with_the_given_ca_bundle(
    helm: Helm, cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    with release(helm, cluster, api, namespace) as r:
        r.install(merge(ISOLATED, MODES["existingSecret"]))
        assert ca_bundle(r.webhook_config()) == EXISTING_CA
        ca = client.CoreV1Api(api).read_namespaced_config_map(f"{r.fullname}-ca", namespace)
        assert ca.data["ca.crt"].strip() == EXISTING_CA.decode().strip()


def service_account_kubeconfig(cluster: Cluster, namespace: str, name: str, out: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (the identity RBAC sees in a pod)."""
    written = cluster.user_kubeconfig(f"system:serviceaccount:{namespace}:{name}",
                                      ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"])
    # The Kubernetes client splits a kubeconfig path at ':' (a path list), so copy it to a plain name.
    out.write_bytes(written.read_bytes())
    out.chmod(0o600)
    return out


def server_args(deployment_args: list[str], policy_file: Path, kubeconfig: Path) -> list[str]:
    """The Deployment's arguments for a server on loopback: the harness sets cert dir, host and port."""
    args: list[str] = []
    skip = 0
    for arg in deployment_args:
        if skip:
            skip -= 1
            continue
        if arg in ("--cert-dir", "--host", "--port"):
            skip = 1
            continue
        if arg == "--policy":
            args += [arg, str(policy_file)]
            skip = 1
            continue
        args.append(arg)
    assert "--self-managed" in args
    return [*args, "--kubeconfig", str(kubeconfig), "--san", "localhost", "--san", "127.0.0.1"]


def wait_for(what: str, check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_self_managed_mode_works_with_exactly_the_charts_rbac_and_upgrades_keep_the_servers_ca_bundle(
    helm: Helm, cluster: Cluster, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    values = merge(ISOLATED, {"certificates": {"mode": "selfManaged"}})
    with release(helm, cluster, api, namespace) as r:
        r.install(values)
        assert not r.webhook_config().webhooks[0].client_config.ca_bundle
        objs = helm.template(values, release=r.name, namespace=namespace)
        container = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        policy_file = tmp_path / "policy.yaml"
        policy_file.write_text(one(objs, "ConfigMap", f"{r.fullname}-policy")["data"]["policy.yaml"])
        kubeconfig = service_account_kubeconfig(cluster, namespace, r.fullname, tmp_path / "sa.kubeconfig")
        as_sa = new_client(kubeconfig)

        cert_dir = tmp_path / "certs"
        with running_server(cert_dir, tmp_path / "server.log", server_args(container["args"], policy_file, kubeconfig)) as server:
            secret = wait_for("the server's Secret", lambda: _secret_or_none(r))
            wait_for("the caBundle", lambda: ca_bundle(r.webhook_config()) == secret["ca.crt"])
            status, answer = server.review(review_for(annotated()))
            assert status == 200 and answer["response"]["allowed"] is True, answer

            r.upgrade(merge(values, {"webhook": {"timeoutSeconds": 7}}))
            config = r.webhook_config()
            assert config.webhooks[0].timeout_seconds == 7
            assert ca_bundle(config) == secret["ca.crt"], "the upgrade must keep the caBundle the server wrote"

        core = client.CoreV1Api(as_sa)
        for forbidden in (lambda: core.list_namespaced_secret(namespace),
                          lambda: core.read_namespaced_secret(f"sh.helm.release.v1.{r.name}.v1", namespace),
                          lambda: client.AdmissionregistrationV1Api(as_sa).list_mutating_webhook_configuration(),
                          lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}})):
            with pytest.raises(ApiException) as denied:
                forbidden()
            assert denied.value.status == 403

        r.uninstall()
        # The server's Secret is not part of the release (see NOTES.txt): it stays until deleted.
        assert r.secret()["ca.crt"] == secret["ca.crt"]


def _secret_or_none(r: Release) -> dict[str, bytes] | None:
    try:
        return r.secret()
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def test_a_cert_manager_install_without_cert_manager_fails_and_leaves_nothing_behind(
    helm: Helm, cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    with release(helm, cluster, api, namespace) as r:
        with pytest.raises(HelmFailed) as e:
            r.install(merge(ISOLATED, MODES["certManager"]))
        assert "cert-manager.io/v1" in e.value.stderr or "Certificate" in e.value.stderr
    with pytest.raises(ApiException) as e404:
        r.webhook_config()
    assert e404.value.status == 404, "nothing of a release that failed to install may stay behind"
