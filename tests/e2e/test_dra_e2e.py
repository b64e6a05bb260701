"""End to end: GPUs claimed through DRA, with ResourceClaimTemplates created in a real kube-apiserver
(resource.k8s.io/v1) and read by the running webhook's watch."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.test_admission import create, manifest, model
from tests.e2e.test_policy_e2e import create_eventually
from tests.server_harness import Server
from tests.vllm_grammar import parse_launch

pytestmark = pytest.mark.e2e
SERVE = ["vllm", "serve", "/mnt/models"]


def claim_template(name: str, gpus: int, nics: int = 0) -> dict[str, Any]:
    requests: list[dict[str, Any]] = [{"name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": gpus}}]
    if nics:
        requests.append({"name": "nics", "exactly": {"deviceClassName": "rdma.example.com", "count": nics}})
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name}, "spec": {"spec": {"devices": {"requests": requests}}}}


def dra_manifest(name: str, template: str) -> dict[str, Any]:
    obj = manifest(name, SERVE, limits={"cpu": "8"})
    obj["spec"]["predictor"]["model"]["resources"]["claims"] = [{"name": "gpu"}]
    obj["spec"]["predictor"]["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": template}]
    return obj


def test_resource_claim_templates_in_the_api_server_decide_the_data_parallel_size(
    api: client.ApiClient, registered: Server, namespace: str
) -> None:
    resource = client.ResourceV1Api(api)
    resource.create_namespaced_resource_claim_template(namespace, claim_template("four-gpus", 4, nics=2))
    stored, headers = create_eventually(api, namespace, dra_manifest("dra", "four-gpus"), "is not known to the webhook")
    ns = parse_launch(model(stored)["command"])
    assert (ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size) == (True, 1, 4)
    assert "drops DRA claims" not in headers.get("Warning", "")  # the manifest says RawDeployment

    # a template's spec is immutable; one recreated with another count changes what the next write gets
    resource.delete_namespaced_resource_claim_template("four-gpus", namespace)
    resource.create_namespaced_resource_claim_template(namespace, claim_template("four-gpus", 2))
    deadline = time.monotonic() + 20
    while True:
        stored, _ = create(api, namespace, dra_manifest(f"dra-{int(time.monotonic() * 1000) % 100000}", "four-gpus"),
                           dry_run="All")
        if parse_launch(model(stored)["command"]).data_parallel_size == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert parse_launch(model(stored)["command"]).data_parallel_size == 2


def test_a_template_that_does_not_exist_is_a_denial_that_names_it(
    api: client.ApiClient, registered: Server, namespace: str
) -> None:
    with pytest.raises(ApiException) as denied:
        create(api, namespace, dra_manifest("missing", "no-such-template"))
    assert denied.value.status == 403
    assert "'no-such-template'" in str(denied.value.body) and "is not known to the webhook" in str(denied.value.body)
