"""/dev/shm: a pod running TP x DP > 1 gets a memory-backed volume there (webhook/core/shm.py)."""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest

from tests.helpers import apply, isvc, load_example, shipped_runtime_docs, shipped_runtimes
from tests.kserve.test_llminferenceservice import llmisvc, multi_node, with_prefill
from webhook.admission.kinds import mutate
from webhook.core.annotations import UNDO_RECORD
from webhook.core.options import Options
from webhook.core.policy import PolicyError, parse
from webhook.core.shm import quantity
from webhook.kserve.selection import Runtimes
from webhook.kserve.servingruntime import spec_from_object

SERVE = ["vllm", "serve", "/mnt/models"]
MEMORY_8GI = {"medium": "Memory", "sizeLimit": "8Gi"}


def custom(gpus: str = "8", **container: Any) -> dict[str, Any]:
    """An InferenceService with its own predictor container (no runtime is merged in)."""
    obj = isvc(command=SERVE, limits={"nvidia.com/gpu": gpus})
    model = obj["spec"]["predictor"].pop("model")
    model.pop("modelFormat")
    model.update(name="kserve-container", image="vllm/vllm-openai:v0.11.0", **container)
    obj["spec"]["predictor"]["containers"] = [model]
    return obj


def run(obj: dict[str, Any], options: Options | None = None, runtimes: Runtimes | None = None
        ) -> tuple[dict[str, Any], Any]:
    verdict = mutate(copy.deepcopy(obj), options, runtimes)
    assert verdict.allowed, verdict.message
    return apply(obj, verdict), verdict


def turn_off(obj: dict[str, Any]) -> dict[str, Any]:
    off = copy.deepcopy(obj)
    off["metadata"]["annotations"]["ep.enabled"] = "false"
    return run(off)[0]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    c = obj["spec"]["predictor"]["containers"][0]
    assert isinstance(c, dict)
    return c


# -- InferenceService -----------------------------------------------------------------------


def test_a_custom_predictor_gets_a_memory_dev_shm_of_8gi_recorded_for_undo() -> None:
    obj = custom()
    out, verdict = run(obj)
    assert out["spec"]["predictor"]["volumes"] == [{"name": "dshm", "emptyDir": MEMORY_8GI}]
    assert container(out)["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert "added /dev/shm to spec.predictor: volume dshm, emptyDir Memory 8Gi, for TP x DP = 8" in verdict.warnings
    assert run(out)[1].patch == ()  # idempotent
    restored = turn_off(out)
    assert restored["spec"] == obj["spec"]
    assert UNDO_RECORD not in restored["metadata"]["annotations"]


def test_existing_volumes_and_mounts_are_kept_and_a_taken_name_is_not_reused() -> None:
    cache = {"name": "dshm", "emptyDir": {}}
    obj = custom(volumeMounts=[{"name": "dshm", "mountPath": "/cache"}])
    obj["spec"]["predictor"]["volumes"] = [cache]
    out, _ = run(obj)
    assert out["spec"]["predictor"]["volumes"] == [cache, {"name": "dshm-ep", "emptyDir": MEMORY_8GI}]
    assert container(out)["volumeMounts"] == [{"name": "dshm", "mountPath": "/cache"},
                                              {"name": "dshm-ep", "mountPath": "/dev/shm"}]
    assert turn_off(out)["spec"] == obj["spec"]


def test_a_memory_volume_already_at_dev_shm_is_left_as_it_is_even_if_small() -> None:
    obj = custom(volumeMounts=[{"name": "shm", "mountPath": "/dev/shm/"}])
    obj["spec"]["predictor"]["volumes"] = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
    out, verdict = run(obj)
    assert out["spec"]["predictor"]["volumes"] == obj["spec"]["predictor"]["volumes"]
    assert not any("/spec/predictor/volumes" in op["path"] or "volumeMounts" in op["path"] for op in verdict.patch)


@pytest.mark.parametrize("source", [{"hostPath": {"path": "/dev/shm"}}, {"emptyDir": {}},
                                    {"persistentVolumeClaim": {"claimName": "scratch"}}])
def test_dev_shm_from_another_kind_of_volume_is_warned_about_and_not_touched(source: dict[str, Any]) -> None:
    obj = custom(volumeMounts=[{"name": "scratch", "mountPath": "/dev/shm"}])
    obj["spec"]["predictor"]["volumes"] = [{"name": "scratch", **source}]
    out, verdict = run(obj)
    assert out["spec"]["predictor"]["volumes"] == obj["spec"]["predictor"]["volumes"]
    assert container(out)["volumeMounts"] == obj["spec"]["predictor"]["containers"][0]["volumeMounts"]
    assert any(w.startswith("spec.predictor: /dev/shm is volume scratch (") and "not memory" in w
               for w in verdict.warnings)


def test_kserves_vllm_and_huggingface_runtimes_mount_dev_shm_so_nothing_is_added() -> None:
    specs = {d["metadata"]["name"]: spec_from_object(d["kind"], d) for d in shipped_runtime_docs()}
    assert specs["kserve-vllmserver"].dev_shm is True  # type: ignore[union-attr]
    assert specs["kserve-huggingfaceserver"].dev_shm is True  # type: ignore[union-attr]
    for fmt in ("vLLM", "huggingface"):
        obj = isvc(args=["--max-model-len=4096"])
        obj["spec"]["predictor"]["model"]["modelFormat"] = {"name": fmt}
        out, verdict = run(obj, runtimes=shipped_runtimes())
        assert "volumes" not in out["spec"]["predictor"], fmt
        assert not any("shm" in w for w in verdict.warnings)


def test_a_runtime_without_dev_shm_gets_one_on_the_model_container_and_an_unknown_runtime_is_trusted() -> None:
    runtime = {"kind": "ServingRuntime", "metadata": {"name": "plain", "namespace": "llm"}, "spec": {
        "supportedModelFormats": [{"name": "vllm", "autoSelect": True}],
        "containers": [{"name": "kserve-container", "image": "vllm/vllm-openai:v0.11.0", "command": SERVE}]}}
    spec = spec_from_object("ServingRuntime", runtime)
    assert spec is not None and spec.dev_shm is None
    out, _ = run(isvc(args=["--max-model-len=4096"]), runtimes=Runtimes(namespaced=(spec,)))
    assert out["spec"]["predictor"]["volumes"] == [{"name": "dshm", "emptyDir": MEMORY_8GI}]
    assert out["spec"]["predictor"]["model"]["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    unknown, _ = run(isvc(command=SERVE))  # no runtimes known: KServe's vLLM runtimes bring one
    assert "volumes" not in unknown["spec"]["predictor"]


def test_policy_warn_says_what_it_would_add_and_off_says_nothing() -> None:
    out, verdict = run(custom(), Options(shared_memory="warn"))
    assert "volumes" not in out["spec"]["predictor"]
    assert "spec.predictor has no memory /dev/shm (64Mi); TP x DP = 8 needs one: emptyDir Memory, 8Gi" \
        in verdict.warnings
    out, verdict = run(custom(), Options(shared_memory="off"))
    assert "volumes" not in out["spec"]["predictor"] and not any("shm" in w for w in verdict.warnings)


def test_the_size_comes_from_the_policy() -> None:
    out, _ = run(custom(), Options(shared_memory_size="32Gi"))
    assert out["spec"]["predictor"]["volumes"][0]["emptyDir"]["sizeLimit"] == "32Gi"


def test_a_new_gpu_count_keeps_the_volume_and_undo_still_restores_the_original() -> None:
    obj = custom()
    out, _ = run(obj)
    container(out)["resources"]["limits"]["nvidia.com/gpu"] = "4"
    fewer, verdict = run(out)  # re-planned from the stored originals
    assert "--data-parallel-size" in container(fewer)["command"] and "4" in container(fewer)["command"]
    assert fewer["spec"]["predictor"]["volumes"] == [{"name": "dshm", "emptyDir": MEMORY_8GI}]
    expected = copy.deepcopy(obj["spec"])
    expected["predictor"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "4"
    assert turn_off(fewer)["spec"] == expected


# -- LLMInferenceService ----------------------------------------------------------------------


def test_llminferenceservice_raises_the_presets_dshm_by_naming_it_without_a_mount() -> None:
    obj = llmisvc()
    out, verdict = run(obj)
    assert out["spec"]["template"]["volumes"] == [{"name": "dshm", "emptyDir": MEMORY_8GI}]
    assert "volumeMounts" not in out["spec"]["template"]["containers"][0]  # the preset mounts dshm
    assert "added /dev/shm to spec.template: volume dshm, emptyDir Memory 8Gi, for TP x DP = 8" in verdict.warnings
    restored = turn_off(out)
    assert restored["spec"] == obj["spec"]


def test_prefill_and_multi_node_pods_each_get_dshm() -> None:
    out, _ = run(with_prefill(llmisvc(), gpus="4"))
    assert out["spec"]["prefill"]["template"]["volumes"] == [{"name": "dshm", "emptyDir": MEMORY_8GI}]
    out, _ = run(multi_node(llmisvc(annotations={"ep.nodes": "2"})))
    for part in ("template", "worker"):
        assert out["spec"][part]["volumes"] == [{"name": "dshm", "emptyDir": MEMORY_8GI}], part


@pytest.mark.parametrize(("limit", "after"), [("1Gi", "8Gi"), (None, "8Gi"), ("16Gi", "16Gi"), ("9000M", "9000M")])
def test_a_memory_dshm_below_the_policy_size_is_raised(limit: str | None, after: str) -> None:
    obj = llmisvc()
    empty = {"medium": "Memory", **({"sizeLimit": limit} if limit else {})}
    obj["spec"]["template"]["volumes"] = [{"name": "dshm", "emptyDir": empty}]
    out, verdict = run(obj)
    assert out["spec"]["template"]["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": after}}]
    assert (after != limit) == any(w.startswith("raised spec.template volume dshm (/dev/shm)") for w in verdict.warnings)
    assert turn_off(out)["spec"] == obj["spec"]


def test_a_dshm_that_is_not_in_memory_is_warned_about() -> None:
    obj = llmisvc()
    obj["spec"]["template"]["volumes"] = [{"name": "dshm", "persistentVolumeClaim": {"claimName": "x"}}]
    out, verdict = run(obj)
    assert out["spec"]["template"]["volumes"] == obj["spec"]["template"]["volumes"]
    assert any("/dev/shm is volume dshm (persistentVolumeClaim), not memory" in w for w in verdict.warnings)


def test_a_user_volume_mounted_at_dev_shm_in_main_is_left_alone() -> None:
    obj = llmisvc()
    obj["spec"]["template"]["containers"][0]["volumeMounts"] = [{"name": "big", "mountPath": "/dev/shm"}]
    obj["spec"]["template"]["volumes"] = [{"name": "big", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
    out, _ = run(obj)
    assert out["spec"]["template"]["volumes"] == obj["spec"]["template"]["volumes"]
    assert out["spec"]["template"]["containers"][0]["volumeMounts"] == [{"name": "big", "mountPath": "/dev/shm"}]


# -- policy and quantities --------------------------------------------------------------------


def test_policy_reads_and_validates_shared_memory() -> None:
    policy = parse("defaults: {sharedMemory: warn, sharedMemorySize: 16Gi}\n"
                   "rules: [{namespaces: [big], sharedMemorySize: 64Gi}]")
    assert (policy.defaults.shared_memory, policy.defaults.shared_memory_size) == ("warn", "16Gi")
    assert policy.options_for("big", {}).shared_memory_size == "64Gi"
    assert Options().shared_memory == "add" and Options().shared_memory_size == "8Gi"
    for bad, field in [("sharedMemory: yes", "defaults.sharedMemory"), ("sharedMemorySize: lots", "defaults.sharedMemorySize"),
                       ("sharedMemorySize: 8589934592", "defaults.sharedMemorySize"),
                       ("sharedMemorySize: 1Ki", "defaults.sharedMemorySize")]:
        with pytest.raises(PolicyError, match=field):
            parse(f"defaults: {{{bad}}}")


@pytest.mark.parametrize(("text", "value"), [
    ("8Gi", 8 * 2**30), ("1e9", 10**9), ("512M", 512 * 10**6), ("1.5Gi", 3 * 2**29), ("100m", Fraction(1, 10)),
    (".5Ki", 512), ("8gi", None), ("", None), ("1e9999", None), ("1" * 70, None), (True, None), ("Gi", None),
])
def test_quantities_are_read_as_kubernetes_reads_them(text: object, value: object) -> None:
    assert quantity(text) == value


def test_the_custom_predictor_example_gets_its_dev_shm() -> None:
    obj = load_example("custom-predictor-shm.yaml")
    out, verdict = run(obj)
    assert out["spec"]["predictor"]["volumes"] == [{"name": "dshm", "emptyDir": MEMORY_8GI}]
    assert container(out)["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert turn_off(out)["spec"] == obj["spec"]


def test_a_volume_added_by_hand_after_the_webhook_stays_when_ep_is_turned_off() -> None:
    obj = custom()
    out, _ = run(obj)
    out["spec"]["predictor"]["volumes"].append({"name": "cache", "emptyDir": {}})
    container(out)["volumeMounts"].append({"name": "cache", "mountPath": "/cache"})
    updated, _ = run(out)  # EP still configured: the record now takes the edit as part of the original
    off = turn_off(updated)
    assert off["spec"]["predictor"]["volumes"] == [{"name": "cache", "emptyDir": {}}]
    assert container(off)["volumeMounts"] == [{"name": "cache", "mountPath": "/cache"}]
    assert container(off)["command"] == SERVE


def test_a_raised_dshm_goes_back_to_its_size_and_a_later_volume_stays() -> None:
    obj = llmisvc()
    obj["spec"]["template"]["volumes"] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
    out, _ = run(obj)
    out["spec"]["template"]["volumes"].insert(0, {"name": "cache", "emptyDir": {}})
    off = turn_off(run(out)[0])
    assert off["spec"]["template"]["volumes"] == [{"name": "cache", "emptyDir": {}}, *obj["spec"]["template"]["volumes"]]
    assert off["spec"]["template"]["containers"] == obj["spec"]["template"]["containers"]


def test_a_command_rewritten_by_hand_becomes_the_original_but_the_webhooks_volume_still_goes_with_ep() -> None:
    obj = custom()
    out, _ = run(obj)
    container(out)["command"] = [*SERVE, "--max-model-len", "4096"]  # the EP flags are gone: the webhook re-adds them
    updated, _ = run(out)
    assert "--enable-expert-parallel" in container(updated)["command"]
    off = turn_off(updated)
    assert container(off)["command"] == [*SERVE, "--max-model-len", "4096"]
    assert "volumes" not in off["spec"]["predictor"] and "volumeMounts" not in container(off)


def test_a_runtime_with_dev_shm_on_disk_gets_a_warning_and_no_second_volume() -> None:
    runtime = {"kind": "ServingRuntime", "metadata": {"name": "disk-shm", "namespace": "llm"}, "spec": {
        "supportedModelFormats": [{"name": "vllm", "autoSelect": True}],
        "containers": [{"name": "kserve-container", "image": "vllm/vllm-openai:v0.11.0", "command": SERVE,
                        "volumeMounts": [{"name": "scratch", "mountPath": "/dev/shm"}]}],
        "volumes": [{"name": "scratch", "emptyDir": {}}]}}
    spec = spec_from_object("ServingRuntime", runtime)
    assert spec is not None and spec.dev_shm is False
    out, verdict = run(isvc(args=["--max-model-len=4096"]), runtimes=Runtimes(namespaced=(spec,)))
    assert "volumes" not in out["spec"]["predictor"]
    assert "ServingRuntime disk-shm mounts /dev/shm from a volume not in memory; TP x DP = 8 needs it in memory" \
        in verdict.warnings
