"""Session fixtures: a real API server with KServe's CRDs and the webhook registered."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.e2e.cluster import Cluster, crds_dir
from tests.e2e.kserve import LABEL, KServe, as_body, kserve_binaries, kserve_manifests
from tests.helpers import yaml_documents
from tests.server_harness import Server, server_with_new_certs

WEBHOOK_CONFIG = "vllm-ep-webhook"
MATCH_ANNOTATED = (
    "has(object.metadata.annotations) && ('ep.enabled' in object.metadata.annotations"
    " || 'vllm-ep-webhook.io/original' in object.metadata.annotations)"
)


def new_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def install_crds(api: client.ApiClient, folder: Path | None = None) -> None:
    """Create every CRD in `folder` (default: the project's KServe CRDs) that is not there yet; wait until served."""
    ext = client.ApiextensionsV1Api(api)
    folder = folder or crds_dir()
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise RuntimeError(f"no CRDs in {folder}; set EP_WEBHOOK_CRDS_DIR to KServe's config/crd/full")
    names = []
    existing = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    for path in files:
        for doc in yaml_documents(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                if doc["metadata"]["name"] not in existing:
                    ext.create_custom_resource_definition(doc)
                names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + 60
    for name in names:
        while True:
            crd = ext.read_custom_resource_definition(name)
            if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} not established")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def webhook_server(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The opt-in webhook, with a cluster view as in a real install (runtimes resolved as KServe does)."""
    base = tmp_path_factory.mktemp("webhook")
    with server_with_new_certs(base, ["--kubeconfig", str(cluster.kubeconfig), "--audit-interval", "0"]) as server:
        yield server


def webhook_configuration(url: str, ca_pem: bytes, failure_policy: str = "Fail") -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIG},
        "webhooks": [{
            "name": "ep.vllm-ep-webhook.io",
            "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
            "rules": [{
                "apiGroups": ["serving.kserve.io"], "apiVersions": ["v1beta1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["inferenceservices"], "scope": "Namespaced",
            }, {
                "apiGroups": ["serving.kserve.io"], "apiVersions": ["v1alpha1", "v1alpha2"],
                "operations": ["CREATE", "UPDATE"], "resources": ["llminferenceservices"], "scope": "Namespaced",
            }],
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "failurePolicy": failure_policy,
            "reinvocationPolicy": "IfNeeded",
            "matchConditions": [{"name": "ep-annotated", "expression": MATCH_ANNOTATED}],
            # namespaces labelled e2e-policy belong to the policy tests' own webhook
            "namespaceSelector": {"matchExpressions": [{"key": "e2e-policy", "operator": "DoesNotExist"}]},
        }],
    }


@pytest.fixture(scope="session")
def registered(api: client.ApiClient, webhook_server: Server) -> Iterator[Server]:
    adm = client.AdmissionregistrationV1Api(api)
    adm.create_mutating_webhook_configuration(
        webhook_configuration(f"https://127.0.0.1:{webhook_server.port}/mutate", webhook_server.ca().read_bytes()))
    wait_for_webhook(api, webhook_server)
    yield webhook_server
    adm.delete_mutating_webhook_configuration(WEBHOOK_CONFIG)


def wait_for_webhook(api: client.ApiClient, server: Server, ns: str = "webhook-probe") -> None:
    """The API server picks up webhook configurations asynchronously: poll with dry-run creates."""
    objs = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": ns}})
    except client.exceptions.ApiException as e:
        if e.status != 409:
            raise
    deadline = time.monotonic() + 30
    probe = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "probe", "annotations": {"ep.enabled": "true"}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "vllm"}, "command": ["vllm", "serve", "m"],
                                         "resources": {"limits": {"nvidia.com/gpu": "2"}}}}},
    }
    while True:
        out = objs.create_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", ns, "inferenceservices", probe, dry_run="All")
        if "--data-parallel-size" in out["spec"]["predictor"]["model"]["command"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the API server never called the webhook")
        time.sleep(0.3)


@pytest.fixture()
def namespace(api: client.ApiClient) -> str:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="session")
def kserve(cluster: Cluster, api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServe]:
    """KServe's manager and llmisvc, running against the session's API server (started once)."""
    bins, manifests = kserve_binaries(), kserve_manifests()
    ks = KServe(tmp_path_factory.mktemp("kserve"), bins, manifests, api, cluster.kubeconfig)
    try:
        ks.start()
        yield ks
    finally:
        ks.stop()


@pytest.fixture()
def kserve_namespace(api: client.ApiClient, kserve: KServe) -> str:
    """A fresh namespace where KServe's webhooks apply (ours applies everywhere)."""
    name = f"ks-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(as_body({"metadata": {"name": name, "labels": {LABEL: "true"}}}))
    return name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A failed test that used KServe shows the controllers' logs."""
    outcome = yield
    report = outcome.get_result()
    ks = getattr(item, "funcargs", {}).get("kserve")
    if report.failed and isinstance(ks, KServe):
        report.sections.append(("KServe controllers", ks.logs()))
