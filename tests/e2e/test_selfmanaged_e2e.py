"""Self-managed certificates against a real API server, with exactly the documented RBAC."""

from __future__ import annotations

import base64
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import webhook_configuration
from tests.e2e.test_policy_e2e import POLICY_READER_RULES
from tests.server_harness import Server, running_server

NS = "ep-system"
SECRET = "ep-webhook-tls"
CONFIG = "ep-selfmanaged"
USER = "ep-webhook-selfmanaged"


def grant_documented_rbac(api: client.ApiClient) -> None:
    """The RBAC named in webhook/selfmanaged.py plus the policy's read access — nothing else."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespace({"metadata": {"name": NS}})
    rbac.create_namespaced_role(NS, {"metadata": {"name": USER}, "rules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"], "resourceNames": [SECRET]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]})
    rbac.create_namespaced_role_binding(NS, {
        "metadata": {"name": USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    })
    rbac.create_cluster_role({"metadata": {"name": USER}, "rules": [
        {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
         "verbs": ["get", "update"], "resourceNames": [CONFIG]},
        *POLICY_READER_RULES,  # what every replica needs for the policy, granted by the chart too
    ]})
    rbac.create_cluster_role_binding({
        "metadata": {"name": USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    })


def test_replicas_starting_together_share_one_secret_and_keep_the_ca_bundle_in_sync(
    cluster: Cluster, api: client.ApiClient, tmp_path: Path
) -> None:
    grant_documented_rbac(api)
    kubeconfig = cluster.user_kubeconfig(USER, [])
    adm = client.AdmissionregistrationV1Api(api)
    conf = webhook_configuration("https://127.0.0.1:1/mutate", b"")
    conf["metadata"]["name"] = CONFIG
    conf["webhooks"][0]["name"] = "selfmanaged.vllm-ep-webhook.io"
    conf["webhooks"][0]["clientConfig"].pop("caBundle")
    conf["webhooks"][0]["namespaceSelector"] = {"matchLabels": {"e2e-selfmanaged": "true"}}
    adm.create_mutating_webhook_configuration(conf)

    args = ["--self-managed", "--secret-name", SECRET, "--namespace", NS, "--service", "ep-webhook",
            "--san", "127.0.0.1", "--san", "localhost", "--mutating-webhook-config", CONFIG,
            "--kubeconfig", str(kubeconfig), "--sync-interval", "2"]
    servers: list[Server] = []
    errors: list[BaseException] = []
    with ExitStack() as stack:
        def start(i: int) -> None:
            try:
                servers.append(stack.enter_context(
                    running_server(tmp_path / f"certs-{i}", tmp_path / f"log-{i}", args)))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        assert not errors, errors
        assert len(servers) == 3

        secret = client.CoreV1Api(api).read_namespaced_secret(SECRET, NS)
        data = {k: base64.b64decode(v) for k, v in secret.data.items()}
        assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
        for s in servers:  # every replica serves the pair from the one Secret
            assert (s.cert_dir / "tls.crt").read_bytes() == data["tls.crt"]
            assert (s.cert_dir / "tls.key").stat().st_mode & 0o777 == 0o600
        live = adm.read_mutating_webhook_configuration(CONFIG)
        assert base64.b64decode(live.webhooks[0].client_config.ca_bundle) == data["ca.crt"]

        # the API server trusts a replica through the synced bundle
        live.webhooks[0].client_config.url = f"https://127.0.0.1:{servers[0].port}/mutate"
        adm.replace_mutating_webhook_configuration(CONFIG, live)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "sm-probe", "labels": {"e2e-selfmanaged": "true"}}})
        probe_server = servers[0]
        before = probe_server.metrics().get('ep_webhook_reviews_total{operation="CREATE",outcome="mutated"}', 0)
        _dry_run_probe(api, "sm-probe")
        assert probe_server.metrics()['ep_webhook_reviews_total{operation="CREATE",outcome="mutated"}'] > before

        # a wiped caBundle is restored by the periodic sync
        live = adm.read_mutating_webhook_configuration(CONFIG)
        live.webhooks[0].client_config.ca_bundle = None
        adm.replace_mutating_webhook_configuration(CONFIG, live)
        deadline = time.monotonic() + 20
        while not adm.read_mutating_webhook_configuration(CONFIG).webhooks[0].client_config.ca_bundle:
            assert time.monotonic() < deadline, "caBundle not restored"
            time.sleep(0.5)
    adm.delete_mutating_webhook_configuration(CONFIG)


def _dry_run_probe(api: client.ApiClient, ns: str) -> dict[str, Any]:
    objs = client.CustomObjectsApi(api)
    probe = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "probe", "annotations": {"ep.enabled": "true"}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "vllm"}, "command": ["vllm", "serve", "m"],
                                         "resources": {"limits": {"nvidia.com/gpu": "2"}}}}},
    }
    deadline = time.monotonic() + 20
    while True:
        out: dict[str, Any] = objs.create_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", ns, "inferenceservices", probe, dry_run="All")
        if "--data-parallel-size" in out["spec"]["predictor"]["model"]["command"]:
            return out
        assert time.monotonic() < deadline, "the API server never called the self-managed replica"
        time.sleep(0.5)
