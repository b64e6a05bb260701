"""LLMInferenceService through the running webhook and a real API server, in both served versions."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.kserve_presets import container_argv, run
from tests.server_harness import Server
from tests.kserve.test_llminferenceservice import llmisvc, multi_node, with_prefill
from tests.vllm_grammar import parse_launch
from webhook.core.annotations import UNDO_RECORD

GROUP, PLURAL = "serving.kserve.io", "llminferenceservices"


def create(api: client.ApiClient, ns: str, obj: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    version = obj["apiVersion"].split("/")[1]
    data, _status, headers = client.CustomObjectsApi(api).create_namespaced_custom_object_with_http_info(
        GROUP, version, ns, PLURAL, obj)
    return data, headers


def named(obj: dict[str, Any], name: str) -> dict[str, Any]:
    obj["metadata"] = {"name": name, "annotations": obj["metadata"]["annotations"]}
    return obj


@pytest.mark.parametrize("version", ["v1alpha1", "v1alpha2"])
def test_a_single_node_llminferenceservice_is_stored_ready_to_run_ep(
    api: client.ApiClient, registered: Server, namespace: str, version: str, tmp_path: Path
) -> None:
    obj = named(llmisvc(version=version, annotations={"ep.eplb-config": '{"window_size": 1000}'}), f"single-{version}")
    stored, headers = create(api, namespace, obj)
    assert stored["spec"]["parallelism"] == {"tensor": 1, "expert": True, "data": 8, "dataLocal": 8}
    assert "set spec.parallelism: tensor=1 expert=true data=8 dataLocal=8" in headers.get("Warning", "")
    ns = parse_launch(run(container_argv(stored, "decode"), tmp_path))
    assert (ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size) == (True, 1, 8)
    assert ns.eplb_config == {"window_size": 1000}


def test_prefill_decode_and_multi_node_roles_through_the_api_server(
    api: client.ApiClient, registered: Server, namespace: str
) -> None:
    stored, _ = create(api, namespace, named(with_prefill(llmisvc(), gpus="4"), "pd"))
    assert (stored["spec"]["parallelism"]["data"], stored["spec"]["prefill"]["parallelism"]["data"]) == (8, 4)
    stored, headers = create(api, namespace, named(multi_node(llmisvc(annotations={"ep.nodes": "2"})), "multi"))
    assert stored["spec"]["parallelism"] == {"expert": True, "tensor": 1, "data": 16, "dataLocal": 8}
    assert "hybrid LB" in headers.get("Warning", "")


def test_a_denial_and_turning_ep_off_reach_the_api_server(api: client.ApiClient, registered: Server, namespace: str) -> None:
    with pytest.raises(ApiException) as denied:
        create(api, namespace, named(multi_node(llmisvc()), "no-nodes"))
    assert "ep.nodes" in json.loads(denied.value.body)["message"]
    original = named(llmisvc(args=["--max-model-len=4096"]), "undo")
    stored, _ = create(api, namespace, original)
    stored["metadata"]["annotations"]["ep.enabled"] = "false"
    objs = client.CustomObjectsApi(api)
    off = objs.replace_namespaced_custom_object(GROUP, "v1alpha2", namespace, PLURAL, "undo", stored)
    assert UNDO_RECORD not in off["metadata"]["annotations"]
    assert "parallelism" not in off["spec"]
    expected = copy.deepcopy(original["spec"])
    assert off["spec"]["template"] == expected["template"]
