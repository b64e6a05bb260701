"""LLMInferenceService: what is its own (spec.parallelism, roles, workers, the presets' eval, its model
fields); the rules it shares with every kind are in tests/admission/test_rules_every_kind.py.

Every case is run the way the pod would run it.

The mutated object is merged with KServe's preset for each role (from
../shared/kserve/llmisvcconfig), the preset's Go template is rendered, the
`bash -c` script runs with stand-ins that record vLLM's argv, and that argv
is parsed as vLLM parses it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import apply, json_after, load_example
from tests.kserve_presets import container_argv, run
from tests.vllm_grammar import parse_launch
from webhook.admission.kinds import mutate
from webhook.core.planner import HYBRID_LB_NOTE
from webhook.core.options import Options


def llmisvc(
    gpus: str | None = "8",
    version: str = "v1alpha2",
    annotations: dict[str, str] | None = None,
    args: list[str] | None = None,
    parallelism: dict[str, Any] | None = None,
    enabled: str | None = "true",
) -> dict[str, Any]:
    main: dict[str, Any] = {"name": "main"}
    if gpus is not None:
        main["resources"] = {"limits": {"nvidia.com/gpu": gpus, "cpu": "16"}}
    if args is not None:
        main["args"] = args
    ann = dict(annotations or {})
    if enabled is not None:
        ann["ep.enabled"] = enabled
    spec: dict[str, Any] = {
        "model": {"uri": "hf://Qwen/Qwen3-30B-A3B", "name": "qwen3-moe"},
        "template": {"containers": [main]},
    }
    if parallelism is not None:
        spec["parallelism"] = parallelism
    return {
        "apiVersion": f"serving.kserve.io/{version}",
        "kind": "LLMInferenceService",
        "metadata": {"name": "qwen3", "namespace": "llm", "annotations": ann},
        "spec": spec,
    }


def with_prefill(obj: dict[str, Any], gpus: str = "4") -> dict[str, Any]:
    obj["spec"]["prefill"] = {"template": {"containers": [
        {"name": "main", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}
    return obj


def multi_node(obj: dict[str, Any], gpus: str = "8") -> dict[str, Any]:
    obj["spec"]["worker"] = {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}
    return obj


def vllm_of(obj: dict[str, Any], tmp_path: Path, role: str = "decode", worker: bool = False,
            env: dict[str, str] | None = None) -> Any:
    folder = tmp_path / f"{role}-{'worker' if worker else 'leader'}"
    folder.mkdir(exist_ok=True)
    return parse_launch(run(container_argv(obj, role, worker), folder, env))


def mutated(obj: dict[str, Any], options: Options | None = None) -> tuple[dict[str, Any], Any]:
    verdict = mutate(copy.deepcopy(obj), options)
    return apply(obj, verdict), verdict


# -- single node -----------------------------------------------------------------------------------


def test_without_the_webhook_a_single_node_expert_setting_runs_plain_tensor_parallel(tmp_path: Path) -> None:
    obj = llmisvc(enabled=None, parallelism={"tensor": 1, "expert": True, "data": 8, "dataLocal": 8})
    ns = vllm_of(obj, tmp_path)
    assert ns.enable_expert_parallel is False and ns.data_parallel_size == 1  # the problem this solves


@pytest.mark.parametrize("version", ["v1alpha1", "v1alpha2"])
def test_a_single_node_role_runs_ep_with_dp_equal_to_its_gpus(version: str, tmp_path: Path) -> None:
    out, verdict = mutated(llmisvc(version=version))
    assert out["spec"]["parallelism"] == {"tensor": 1, "expert": True, "data": 8, "dataLocal": 8}
    ns = vllm_of(out, tmp_path)
    assert (ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size) == (True, 1, 8)
    assert ns.model_tag == "/mnt/models" and ns.served_model_name[0] == "qwen3-moe"
    assert "set spec.parallelism: tensor=1 expert=true data=8 dataLocal=8" in verdict.warnings


def test_the_tensor_parallel_annotation_goes_into_parallelism_not_args() -> None:
    out, _ = mutated(llmisvc(annotations={"ep.tensor-parallel-size": "2"}))
    assert out["spec"]["parallelism"] == {"tensor": 2, "expert": True, "data": 4, "dataLocal": 4}
    assert "--tensor-parallel-size" not in out["spec"]["template"]["containers"][0]["args"]  # the preset renders it


def test_a_json_eplb_config_survives_the_presets_eval_byte_for_byte(tmp_path: Path) -> None:
    config = {"window_size": 1000, "step_interval": 3000, "policy": "default"}
    ann = {"ep.eplb": "true", "ep.eplb-config": json.dumps(config), "ep.all2all-backend": "deepep_low_latency"}
    out, _ = mutated(llmisvc(annotations=ann))
    ns = vllm_of(out, tmp_path)
    assert ns.eplb_config == config and ns.enable_eplb is True and ns.all2all_backend == "deepep_low_latency"
    # vLLM 0.15.1 ignores keys it does not know, so a value of any text reaches it: the words are checked
    hostile = {**config, "note": "a b  'c' \"d\" $HOME"}
    out, verdict = mutated(llmisvc(annotations={**ann, "ep.eplb-config": json.dumps(hostile), "ep.vllm-version": "0.15.1"}))
    assert verdict.allowed, verdict.message
    assert json_after(run(container_argv(out, "decode", False), tmp_path), "--eplb-config") == hostile


@pytest.mark.parametrize(
    "hostile",
    ['{"note": "$(touch CANARY)"}', '{"note": "`touch CANARY`"}', '{"note": "a; touch CANARY"}', '{"note": "\'; touch CANARY; \'"}'],
)
def test_annotation_values_never_execute_under_the_presets_eval(hostile: str, tmp_path: Path) -> None:
    # vLLM 0.15.1 ignores an unknown key, so the webhook passes any text in it on: the words are checked
    out, verdict = mutated(llmisvc(annotations={"ep.eplb-config": hostile, "ep.vllm-version": "0.15.1"}))
    assert verdict.allowed, verdict.message
    assert json_after(run(container_argv(out, "decode", False), tmp_path), "--eplb-config") == json.loads(hostile)
    assert not list(tmp_path.rglob("CANARY"))


def test_reject_mode_denies_a_conflicting_parallelism() -> None:
    verdict = mutate(llmisvc(parallelism={"tensor": 4}), Options(on_conflict="reject"))
    assert not verdict.allowed and "spec.parallelism sets tensor: 4" in verdict.message


def test_args_that_the_shell_splits_are_left_alone_and_the_webhooks_flags_come_after(tmp_path: Path) -> None:
    out, _ = mutated(llmisvc(args=["--max-model-len 4096 --data-parallel-size 2"]))
    args = out["spec"]["template"]["containers"][0]["args"]
    assert args[0] == "--max-model-len 4096 --data-parallel-size 2"
    ns = vllm_of(out, tmp_path)
    assert (ns.data_parallel_size, ns.max_model_len) == (8, 4096)


def test_a_main_container_with_its_own_command_is_edited_like_an_inferenceservice(tmp_path: Path) -> None:
    obj = llmisvc()
    obj["spec"]["template"]["containers"][0]["command"] = ["vllm", "serve", "/mnt/models", "-tp", "8"]
    out, _ = mutated(obj)
    assert "parallelism" not in out["spec"]  # the preset, which reads it, is replaced
    ns = vllm_of(out, tmp_path)
    assert (ns.tensor_parallel_size, ns.data_parallel_size, ns.enable_expert_parallel) == (1, 8, True)


# -- prefill / decode --------------------------------------------------------------------------------


def test_prefill_and_decode_are_each_configured_from_their_own_gpus(tmp_path: Path) -> None:
    out, _ = mutated(with_prefill(llmisvc(gpus="8"), gpus="4"))
    assert out["spec"]["parallelism"]["data"] == 8 and out["spec"]["prefill"]["parallelism"]["data"] == 4
    decode, prefill = vllm_of(out, tmp_path, "decode"), vllm_of(out, tmp_path, "prefill")
    assert (decode.data_parallel_size, decode.enable_expert_parallel) == (8, True)
    assert (prefill.data_parallel_size, prefill.enable_expert_parallel) == (4, True)


# -- multi node --------------------------------------------------------------------------------------


def test_a_multi_node_role_sets_parallelism_for_kserves_data_parallel_preset(tmp_path: Path) -> None:
    out, verdict = mutated(multi_node(llmisvc(annotations={"ep.nodes": "2"})))
    assert out["spec"]["parallelism"] == {"expert": True, "tensor": 1, "data": 16, "dataLocal": 8}
    leader = vllm_of(out, tmp_path)
    worker = vllm_of(out, tmp_path, worker=True, env={"LWS_WORKER_INDEX": "1"})
    for ns in (leader, worker):
        assert (ns.enable_expert_parallel, ns.data_parallel_size, ns.data_parallel_size_local) == (True, 16, 8)
    assert (leader.data_parallel_start_rank, leader.headless) == (0, False)
    assert (worker.data_parallel_start_rank, worker.headless) == (8, True)
    assert HYBRID_LB_NOTE in verdict.warnings and len(HYBRID_LB_NOTE) <= 119


def test_without_ep_nodes_the_node_count_comes_from_data_over_data_local() -> None:
    out, _ = mutated(multi_node(llmisvc(gpus="4", parallelism={"data": 24, "dataLocal": 8}), gpus="4"))
    assert out["spec"]["parallelism"] == {"data": 12, "dataLocal": 4, "expert": True, "tensor": 1}


def test_a_multi_node_role_without_a_node_count_is_denied_asking_for_ep_nodes() -> None:
    verdict = mutate(multi_node(llmisvc()))
    assert not verdict.allowed and "ep.nodes" in verdict.message


def test_pipeline_parallelism_with_workers_is_denied() -> None:
    verdict = mutate(multi_node(llmisvc(annotations={"ep.nodes": "2"}, parallelism={"pipeline": 2})))
    assert not verdict.allowed and "spec.parallelism.pipeline" in verdict.message


def test_workers_with_other_gpus_than_the_leader_are_denied() -> None:
    verdict = mutate(multi_node(llmisvc(annotations={"ep.nodes": "2"}), gpus="4"))
    assert not verdict.allowed and "spec.worker.containers[0]" in verdict.message and "make them equal" in verdict.message


def test_hand_written_layout_flags_in_multi_node_args_are_corrected_not_added(tmp_path: Path) -> None:
    out, _ = mutated(multi_node(llmisvc(annotations={"ep.nodes": "2"}, args=["--data-parallel-size", "4"])))
    assert out["spec"]["template"]["containers"][0]["args"] == ["--data-parallel-size", "16"]
    assert vllm_of(out, tmp_path).data_parallel_size == 16


# -- GPUs, undo and policy in an LLMInferenceService's own fields ---------------------------------
# (undo, idempotence, re-planning, hand edits and the policy modes for every kind: tests/admission/test_rules_every_kind.py)


def test_an_object_that_does_not_show_its_gpus_is_denied_saying_where_to_put_them() -> None:
    verdict = mutate(llmisvc(gpus=None))
    assert not verdict.allowed and "resources.limits" in verdict.message
    no_main = llmisvc()
    del no_main["spec"]["template"]
    verdict = mutate(no_main)
    assert not verdict.allowed and "container named main" in verdict.message and "baseRefs" in verdict.message


def test_turning_ep_off_gives_back_a_hand_written_parallelism_and_roles_of_other_sizes() -> None:
    original = with_prefill(llmisvc(args=["--max-model-len=4096"], parallelism={"tensor": 8}), gpus="4")
    on, _ = mutated(original)
    assert on["spec"]["parallelism"]["tensor"] == 1 and on["spec"]["prefill"]["parallelism"]["data"] == 4
    off, _ = mutated(json.loads(json.dumps(ep_off(on), sort_keys=True)))  # Go serialises maps with sorted keys
    assert off == ep_off(original)


def ep_off(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["annotations"]["ep.enabled"] = "false"
    return obj


def test_forbid_mode_denies_expert_parallelism_written_into_parallelism() -> None:
    verdict = mutate(llmisvc(enabled=None, parallelism={"expert": True}), Options(mode="forbid"))
    assert not verdict.allowed and "spec.parallelism.expert is true" in verdict.message


@pytest.mark.parametrize(("globs", "covered"), [(("hf://qwen/*",), True), (("qwen3-moe",), True),
                                               (("*llama*",), False)])
def test_enforce_with_models_reads_an_llminferenceservices_model_uri_and_name(globs: tuple[str, ...],
                                                                               covered: bool) -> None:
    verdict = mutate(llmisvc(enabled=None), Options(mode="enforce", allow_opt_out=False, rule="prod", models=globs))
    assert verdict.allowed and (verdict.patch != ()) == covered


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("llmisvc-single-node.yaml", {("decode", False): (1, 8, 8)}),
        ("llmisvc-prefill-decode.yaml", {("decode", False): (2, 4, 4), ("prefill", False): (2, 2, 2)}),
        ("llmisvc-multi-node.yaml", {("decode", False): (1, 16, 8), ("decode", True): (1, 16, 8)}),
    ],
)
def test_the_readme_examples_run_as_documented(
    example: str, expected: dict[tuple[str, bool], tuple[int, int, int]], tmp_path: Path
) -> None:
    out, verdict = mutated(load_example(example))
    for (role, worker), (tp, dp, local) in expected.items():
        ns = vllm_of(out, tmp_path, role, worker, env={"LWS_WORKER_INDEX": "1"})
        assert ns.enable_expert_parallel is True
        assert (ns.tensor_parallel_size, ns.data_parallel_size) == (tp, dp)
        assert (ns.data_parallel_size_local or dp) == local


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 20) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


_words = st.sampled_from(["--data-parallel-size", "-dp", "4", "-tp", "2", "--enable-expert-parallel", "-ep",
                          "--no-enable-expert-parallel", "--max-model-len 4096", "'x y'", "$EXTRA", "--eplb-config",
                          '{"a": 1}', "--data-parallel-size-local=2", "--headless", "--enable-eplb"]) | st.text(max_size=8)


@settings(max_examples=400, deadline=None)
@given(
    parallelism=st.none()
    | st.fixed_dictionaries({}, optional={k: st.integers(1, 16) for k in ("tensor", "data", "dataLocal")}
                            | {"expert": st.booleans()})
    | _json,
    args=st.none() | st.lists(_words, max_size=5) | _json,
    gpus=st.sampled_from([None, "1", "2", "4", "8", "8", "8", "3", "x"]),
    worker=st.booleans(),
    prefill=st.booleans(),
    annotations=st.fixed_dictionaries({}, optional={
        "ep.nodes": st.sampled_from(["1", "2", "3", "0", "x"]),
        "ep.tensor-parallel-size": st.sampled_from(["1", "2", "4", "3"]),
        "ep.eplb-config": st.sampled_from(['{"window_size": 10}', '{"policy": "$(id) `id`; a b"}', "[1]"]),
    }),
)
def test_odd_llminferenceservices_get_a_verdict_and_allowed_patches_apply(
    parallelism: Any, args: Any, gpus: str | None, worker: bool, prefill: bool, annotations: dict[str, str]
) -> None:
    obj = llmisvc(gpus=gpus, annotations=annotations)
    if parallelism is not None:
        obj["spec"]["parallelism"] = parallelism
    if args is not None:
        obj["spec"]["template"]["containers"][0]["args"] = args
    if worker:
        multi_node(obj, gpus or "8")
    if prefill:
        with_prefill(obj)
    verdict = mutate(copy.deepcopy(obj))
    if not verdict.allowed:
        assert verdict.message and not verdict.patch
        return
    out = apply(obj, verdict)
    again = mutate(copy.deepcopy(out))
    assert again.allowed and not again.patch  # the result is a fixed point
