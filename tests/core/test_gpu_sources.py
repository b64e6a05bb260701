"""Where the GPU count comes from: device plugins, DRA claims (ResourceClaimTemplates, KServe's Managed DRA),
MIG slices and the env that hides GPUs. Each admitted case is parsed as vLLM parses the command it runs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.core.test_engine_rules import SERVE, launched
from tests.helpers import apply, isvc
from tests.kserve.test_llminferenceservice import llmisvc, multi_node, vllm_of
from webhook.admission.kinds import mutate
from webhook.core.annotations import UNDO_RECORD
from webhook.core.options import Options
from webhook.core.policy import PolicyError, parse


def template(name: str = "four-gpus", *requests: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    """A ResourceClaimTemplate as the API server returns it."""
    return {
        "apiVersion": f"resource.k8s.io/{version}",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": "llm"},
        "spec": {"spec": {"devices": {"requests": list(requests)}}},
    }


def exactly(name: str, device_class: str, count: int | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"deviceClassName": device_class, **extra}
    if count is not None:
        body["count"] = count
    return {"name": name, "exactly": body}


FOUR = template("four-gpus", exactly("gpus", "gpu.nvidia.com", 4))


def dra_isvc(claims: list[dict[str, Any]] | None = None, pod_claims: list[dict[str, Any]] | None = None,
             limits: dict[str, Any] | None = None, mode: str | None = "RawDeployment") -> dict[str, Any]:
    """The issue's example: GPUs only through a claim named gpu, from the template four-gpus."""
    obj = isvc(command=SERVE, limits=limits if limits is not None else {"cpu": "8"})
    obj["spec"]["predictor"]["model"]["resources"]["claims"] = claims if claims is not None else [{"name": "gpu"}]
    obj["spec"]["predictor"]["resourceClaims"] = (
        pod_claims if pod_claims is not None else [{"name": "gpu", "resourceClaimTemplateName": "four-gpus"}]
    )
    annotations = obj["metadata"]["annotations"]
    annotations.pop("serving.kserve.io/deploymentMode")
    if mode is not None:
        annotations["serving.kserve.io/deploymentMode"] = mode
    return obj


def decide(obj: dict[str, Any], *templates: dict[str, Any], options: Options | None = None) -> tuple[dict[str, Any], Any]:
    known = {t["metadata"]["name"]: t for t in templates}
    verdict = mutate(copy.deepcopy(obj), options, claim_templates=known)
    return (apply(obj, verdict) if verdict.allowed else obj), verdict


def layout(obj: dict[str, Any]) -> tuple[bool, int, int]:
    ns = launched(obj)
    return ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size


# -- DRA: ResourceClaimTemplates ---------------------------------------------------------------------------------


def test_gpus_claimed_through_a_resource_claim_template_decide_the_data_parallel_size() -> None:
    out, verdict = decide(dra_isvc(), FOUR)
    assert verdict.allowed, verdict.message
    assert layout(out) == (True, 1, 4)
    assert not [w for w in verdict.warnings if "DRA" in w]


@pytest.mark.parametrize("version", ["v1", "v1beta2"])
def test_the_v1_layout_and_the_flat_v1beta1_layout_count_the_same(version: str) -> None:
    flat = template("four-gpus", {"name": "gpus", "deviceClassName": "gpu.nvidia.com", "count": 4}, version="v1beta1")
    nested = template("four-gpus", exactly("gpus", "gpu.nvidia.com", 4), version=version)
    assert layout(decide(dra_isvc(), flat)[0]) == layout(decide(dra_isvc(), nested)[0]) == (True, 1, 4)


def test_only_gpu_device_classes_count_and_a_request_without_count_is_one_device() -> None:
    mixed = template("four-gpus", exactly("gpus", "gpu.nvidia.com", 2), exactly("nic", "rdma.mellanox.com", 8),
                     exactly("more", "gpu.nvidia.com", 2), exactly("one", "gpu.nvidia.com"))
    out, verdict = decide(dra_isvc(), mixed)
    assert verdict.allowed, verdict.message
    assert layout(out) == (True, 1, 5)


def test_a_container_that_uses_one_request_of_a_claim_gets_only_that_requests_gpus() -> None:
    two = template("four-gpus", exactly("big", "gpu.nvidia.com", 6), exactly("small", "gpu.nvidia.com", 2))
    out, _ = decide(dra_isvc(claims=[{"name": "gpu", "request": "small"}]), two)
    assert layout(out) == (True, 1, 2)
    _, verdict = decide(dra_isvc(claims=[{"name": "gpu", "request": "nope"}]), two)
    assert not verdict.allowed and "no request named 'nope'" in verdict.message


def test_gpu_device_classes_are_a_policy_setting() -> None:
    custom = template("four-gpus", exactly("gpus", "gpu.example.com", 4))
    _, verdict = decide(dra_isvc(), custom)
    assert not verdict.allowed and "gets none" in verdict.message
    options = parse("defaults:\n  gpuDeviceClasses: [gpu.example.com]\n").defaults
    out, verdict = decide(dra_isvc(), custom, options=options)
    assert verdict.allowed and layout(out) == (True, 1, 4)
    with pytest.raises(PolicyError, match="gpuDeviceClasses"):
        parse("defaults:\n  gpuDeviceClasses: [Not_A_Class]\n")


@pytest.mark.parametrize(
    ("obj", "templates", "needles"),
    [
        (dra_isvc(), (), ["'four-gpus'", "not known", "--resources"]),
        (dra_isvc(), (template("four-gpus", exactly("g", "gpu.nvidia.com", allocationMode="All")),),
         ["allocationMode: All", "ExactCount"]),
        (dra_isvc(), (template("four-gpus", {"name": "g", "firstAvailable": [
            {"name": "a", "deviceClassName": "gpu.nvidia.com", "count": 8}]}),), ["firstAvailable", "exactly"]),
        (dra_isvc(pod_claims=[{"name": "gpu", "resourceClaimName": "shared"}]), (FOUR,),
         ["shared ResourceClaim", "resourceClaimTemplateName"]),
        (dra_isvc(pod_claims=[]), (FOUR,), ["'gpu'", "spec.predictor.resourceClaims", "does not define"]),
        (dra_isvc(limits={"nvidia.com/gpu": "4"}), (FOUR,), ["both", "resources.limits", "DRA"]),
        (dra_isvc(), (template("four-gpus", exactly("a", "gpu.nvidia.com", 4), exactly("b", "gpu.amd.com", 4)),),
         ["two kinds", "gpu.amd.com"]),
        (dra_isvc(), (template("four-gpus", exactly("g", "gpu.nvidia.com", 1)),), ["at least 2 GPUs"]),
    ],
    ids=["unknown template", "all", "first available", "shared claim", "undefined claim", "two sources",
         "two classes", "one gpu"],
)
def test_claims_whose_gpus_cannot_be_known_at_admission_are_denied_saying_how_to_fix_them(
    obj: dict[str, Any], templates: tuple[dict[str, Any], ...], needles: list[str]
) -> None:
    _, verdict = decide(obj, *templates)
    assert not verdict.allowed
    for needle in needles:
        assert needle in verdict.message
    assert "e.g. nvidia.com/gpu" not in verdict.message or "gets none" in verdict.message


def test_without_any_view_of_the_templates_a_dra_object_is_denied_rather_than_guessed() -> None:
    verdict = mutate(dra_isvc())
    assert not verdict.allowed and "'four-gpus'" in verdict.message and "set resources.limits" not in verdict.message


@pytest.mark.parametrize(("mode", "warned"), [(None, True), ("Serverless", True), ("Knative", True),
                                              ("RawDeployment", False), ("Standard", False)])
def test_dra_outside_standard_deployment_mode_warns_that_knative_drops_claims(mode: str | None, warned: bool) -> None:
    _, verdict = decide(dra_isvc(mode=mode), FOUR)
    assert verdict.allowed
    assert any("drops DRA claims" in w for w in verdict.warnings) is warned


def test_turning_ep_off_restores_a_dra_object() -> None:
    obj = dra_isvc()
    out, _ = decide(obj, FOUR)
    out["metadata"]["annotations"]["ep.enabled"] = "false"
    back, verdict = decide(out, FOUR)
    assert verdict.allowed and "command" in back["spec"]["predictor"]["model"]
    assert back["spec"]["predictor"]["model"]["command"] == SERVE
    assert UNDO_RECORD not in back["metadata"]["annotations"]


# -- MIG and hidden GPUs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [{"nvidia.com/mig-3g.40gb": "2"}, {"nvidia.com/gpu": "8", "nvidia.com/mig-1g.10gb": "1"}])
def test_mig_slices_are_denied_saying_they_cannot_form_a_data_parallel_group(limits: dict[str, str]) -> None:
    verdict = mutate(isvc(command=SERVE, limits=limits))
    assert not verdict.allowed
    assert "MIG" in verdict.message and "cannot form a data-parallel group" in verdict.message


def test_mig_slices_through_dra_are_denied_the_same_way() -> None:
    _, verdict = decide(dra_isvc(), template("four-gpus", exactly("g", "mig.nvidia.com", 2)))
    assert not verdict.allowed and "cannot form a data-parallel group" in verdict.message


def _with_env(obj: dict[str, Any], *env: dict[str, Any]) -> dict[str, Any]:
    obj["spec"]["predictor"]["model"]["env"] = list(env)
    return obj


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"name": "CUDA_VISIBLE_DEVICES", "value": "0,1"}, ["CUDA_VISIBLE_DEVICES='0,1'", "sees 2 of the pod's 8"]),
        ({"name": "HIP_VISIBLE_DEVICES", "value": ""}, ["sees 0 of the pod's 8"]),
        ({"name": "CUDA_VISIBLE_DEVICES", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
         ["CUDA_VISIBLE_DEVICES", "run time"]),
        ({"name": "CUDA_VISIBLE_DEVICES", "value": "$(GPUS)"}, ["CUDA_VISIBLE_DEVICES", "run time"]),
    ],
)
def test_env_that_hides_some_of_the_pods_gpus_is_denied(env: dict[str, Any], needles: list[str]) -> None:
    verdict = mutate(_with_env(isvc(command=SERVE), env))
    assert not verdict.allowed
    for needle in needles:
        assert needle in verdict.message


def test_env_that_shows_every_gpu_of_the_pod_is_fine_and_the_last_entry_wins() -> None:
    obj = _with_env(isvc(command=SERVE), {"name": "CUDA_VISIBLE_DEVICES", "value": "0"},
                    {"name": "CUDA_VISIBLE_DEVICES", "value": "0,1,2,3,4,5,6,7"})
    out, verdict = decide(obj)
    assert verdict.allowed and layout(out) == (True, 1, 8)


# -- LLMInferenceService: claims on the template, KServe's Managed DRA ------------------------------------------------


def managed(count: str | None, container: str | None = None, gpus: str | None = None) -> dict[str, Any]:
    annotations = {"serving.kserve.io/exp-dra-device-class": "gpu.nvidia.com"}
    if count is not None:
        annotations["serving.kserve.io/exp-dra-device-count"] = count
    if container is not None:
        annotations["serving.kserve.io/exp-dra-container-name"] = container
    return llmisvc(gpus=gpus, annotations=annotations)


@pytest.mark.parametrize(("count", "container"), [("8", None), (" 8 ", "main"), ("+8", None)])
def test_managed_dra_annotations_give_the_main_container_its_gpus(count: str, container: str | None,
                                                                   tmp_path: Path) -> None:
    out, verdict = decide(managed(count, container))
    assert verdict.allowed, verdict.message
    assert out["spec"]["parallelism"] == {"tensor": 1, "expert": True, "data": 8, "dataLocal": 8}
    ns = vllm_of(out, tmp_path)
    assert (ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size) == (True, 1, 8)


@pytest.mark.parametrize(
    ("obj", "needles"),
    [
        (managed("eight"), ["exp-dra-device-count", "'eight'", "at least 1"]),
        (managed("0"), ["exp-dra-device-count", "'0'"]),
        (managed(None), ["at least 2 GPUs"]),  # KServe's default: one device
        (managed("8", container="sidecar"), ["gets none"]),
        (managed("8", gpus="8"), ["both"]),
    ],
    ids=["not a number", "zero", "default one", "other container", "two sources"],
)
def test_managed_dra_that_does_not_give_main_a_clear_gpu_count_is_denied(obj: dict[str, Any], needles: list[str]) -> None:
    _, verdict = decide(obj)
    assert not verdict.allowed
    for needle in needles:
        assert needle in verdict.message


def test_managed_dra_goes_to_the_first_container_so_main_elsewhere_must_be_named() -> None:
    obj = managed("8")
    obj["spec"]["template"]["containers"].insert(0, {"name": "proxy", "image": "envoy"})
    _, verdict = decide(obj)
    assert not verdict.allowed and "exp-dra-container-name: main" in verdict.message
    obj["metadata"]["annotations"]["serving.kserve.io/exp-dra-container-name"] = "main"
    assert decide(obj)[1].allowed


def test_managed_dra_gives_every_node_of_a_multi_node_role_its_gpus(tmp_path: Path) -> None:
    obj = multi_node(managed("8"), gpus="8")
    del obj["spec"]["worker"]["containers"][0]["resources"]
    obj["metadata"]["annotations"]["ep.nodes"] = "2"
    out, verdict = decide(obj)
    assert verdict.allowed, verdict.message
    assert out["spec"]["parallelism"] == {"expert": True, "tensor": 1, "data": 16, "dataLocal": 8}
    worker = vllm_of(out, tmp_path, worker=True)
    assert (worker.data_parallel_size, worker.data_parallel_size_local, worker.enable_expert_parallel) == (16, 8, True)


def test_an_llminferenceservice_template_with_its_own_claim_counts_that_templates_gpus(tmp_path: Path) -> None:
    obj = llmisvc(gpus=None)
    obj["spec"]["template"]["containers"][0]["resources"] = {"claims": [{"name": "gpu"}]}
    obj["spec"]["template"]["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": "four-gpus"}]
    out, verdict = decide(obj, FOUR)
    assert verdict.allowed, verdict.message
    ns = vllm_of(out, tmp_path)
    assert (ns.tensor_parallel_size, ns.data_parallel_size) == (1, 4)
