"""KServe's Managed DRA through its real llmisvc controller: the GPUs KServe's annotations give the pod are the
GPUs the webhook's data-parallel group spans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.kserve import GROUP, KServe, plain
from tests.e2e.test_kserve_e2e import deployed_container, ep_on, isvcs, launch
from tests.server_harness import Server

pytestmark = pytest.mark.e2e


def managed_service(name: str, count: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha2", "kind": "LLMInferenceService",
        "metadata": {"name": name, "annotations": {
            "ep.enabled": "true",
            "serving.kserve.io/exp-dra-device-class": "gpu.nvidia.com",
            "serving.kserve.io/exp-dra-device-count": str(count),
        }},
        "spec": {
            "model": {"uri": "pvc://models/qwen3-moe", "name": "qwen3-moe"},
            "template": {"containers": [{"name": "main", "resources": {"limits": {"cpu": "4"}}}]},
        },
    }


def test_managed_dra_annotations_give_the_pod_the_gpus_its_data_parallel_group_spans(
        api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str, tmp_path: Path) -> None:
    ns, name, count = kserve_namespace, "managed-dra", 4
    stored = plain(api, isvcs(api).create_namespaced_custom_object(
        GROUP, "v1alpha2", ns, "llminferenceservices", managed_service(name, count)))
    assert stored["spec"]["parallelism"] == {"tensor": 1, "expert": True, "data": count, "dataLocal": count}

    container = deployed_container(kserve, api, ns, f"{name}-kserve", "main", ep_on)
    vllm = launch(container, tmp_path, f"{name}-kserve-0", ns)
    assert (vllm.enable_expert_parallel, vllm.tensor_parallel_size, vllm.data_parallel_size) == (True, 1, count)

    # what KServe's controller made of the annotations: the claim on main, and the template behind it
    pod = plain(api, client.AppsV1Api(api).read_namespaced_deployment(f"{name}-kserve", ns))["spec"]["template"]["spec"]
    claims = {c["name"]: c for c in pod.get("resourceClaims", [])}
    assert [c["name"] for c in container["resources"].get("claims", [])] == ["managed-device"]
    template_name = claims["managed-device"]["resourceClaimTemplateName"]
    template = kserve.wait_for(f"ResourceClaimTemplate {ns}/{template_name}", lambda: plain(
        api, client.ResourceV1Api(api).read_namespaced_resource_claim_template(template_name, ns)))
    [request] = template["spec"]["spec"]["devices"]["requests"]
    assert request["exactly"]["deviceClassName"] == "gpu.nvidia.com"
    assert request["exactly"]["count"] == vllm.tensor_parallel_size * vllm.data_parallel_size
