"""Table-driven tests, one group per rule of the EP mutation engine, on InferenceServices.

The rules that hold for every kind alike (ep.enabled, the TP annotation, conflicting values replaced in
place, negations, reject mode, undo, idempotence, the policy modes) are written once in
tests/admission/test_rules_every_kind.py and run there for every layout of every kind; this file keeps
what is read or written in an InferenceService's own way.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.helpers import isvc, model, run
from tests.vllm_grammar import parse_launch
from webhook.admission.kinds import mutate
from webhook.core.annotations import UNDO_RECORD
from webhook.core.options import Options

SERVE = ["vllm", "serve", "/mnt/models"]


def launched(obj: dict[str, Any]) -> Any:
    """What vLLM would parse from a list command plus args."""
    m = model(obj)
    return parse_launch(list(m.get("command") or []) + list(m.get("args") or []))


# -- what users write ------------------------------------------------------------


@pytest.mark.parametrize(
    ("tp", "needle"),
    [("3", "does not divide"), ("0", "at least 1"), ("two", "whole number"), ("-2", "whole number"), ("2.0", "whole number")],
)
def test_bad_tensor_parallel_sizes_are_denied_with_a_fix(tp: str, needle: str) -> None:
    verdict = mutate(isvc(command=SERVE, annotations={"ep.tensor-parallel-size": tp}))
    assert not verdict.allowed and needle in verdict.message


def test_all2all_backend_annotation_becomes_the_flag() -> None:
    out, _ = run(isvc(command=SERVE, annotations={"ep.all2all-backend": "deepep_high_throughput"}))
    assert launched(out).all2all_backend == "deepep_high_throughput"


def test_unknown_all2all_backend_is_denied_listing_the_accepted_names() -> None:
    verdict = mutate(isvc(command=SERVE, annotations={"ep.all2all-backend": "nccl"}))
    assert not verdict.allowed
    assert "nccl" in verdict.message and "deepep_low_latency" in verdict.message


def test_eplb_annotations_become_enable_eplb_and_eplb_config() -> None:
    ann = {"ep.eplb": "true", "ep.eplb-config": '{"window_size": 1000}'}
    out, _ = run(isvc(command=SERVE + ["--no-enable-eplb"], annotations=ann))
    ns = launched(out)
    assert ns.enable_eplb is True and ns.eplb_config == {"window_size": 1000}


def test_eplb_false_removes_a_hand_written_enable_eplb() -> None:
    out, verdict = run(isvc(command=SERVE + ["--enable-eplb"], annotations={"ep.eplb": "false"}))
    assert launched(out).enable_eplb is False
    assert "removed --enable-eplb" in verdict.warnings


@pytest.mark.parametrize("config", ["[1, 2]", "not json", '"string"', "42"])
def test_eplb_config_that_is_not_a_json_object_is_denied(config: str) -> None:
    verdict = mutate(isvc(command=SERVE, annotations={"ep.eplb-config": config}))
    assert not verdict.allowed and "JSON object" in verdict.message


# -- rule 1: where -------------------------------------------------------------------


def test_no_command_puts_the_flags_at_the_end_of_args() -> None:
    obj = isvc(args=["--max-model-len=8192", "--tensor-parallel-size", "8"])
    out, _ = run(obj)
    m = model(out)
    assert "command" not in m
    assert m["args"] == [
        "--max-model-len=8192", "--tensor-parallel-size", "1", "--enable-expert-parallel", "--data-parallel-size", "8",
    ]


def test_no_command_and_no_args_creates_args() -> None:
    out, _ = run(isvc())
    assert model(out)["args"] == ["--enable-expert-parallel", "--tensor-parallel-size", "1", "--data-parallel-size", "8"]


def test_legacy_kserve_container_entry_is_edited() -> None:
    obj = isvc()
    pred = obj["spec"]["predictor"]
    container = pred.pop("model")
    container.pop("modelFormat")
    container.pop("storageUri")
    container.update(name="kserve-container", image="vllm/vllm-openai:v0.11.0", command=SERVE)
    pred["containers"] = [{"name": "sidecar", "image": "busybox"}, container]
    out, verdict = run(obj)
    c = out["spec"]["predictor"]["containers"][1]
    ns = parse_launch(c["command"], release="0.11.0")  # the image's vLLM judges it
    assert ns.data_parallel_size == 8 and ns.enable_expert_parallel
    assert out["spec"]["predictor"]["containers"][0] == {"name": "sidecar", "image": "busybox"}
    # a custom container has no runtime to bring /dev/shm: the webhook adds one (tests/core/test_shm.py)
    assert all(op["path"].startswith(("/spec/predictor/containers/1/", "/spec/predictor/volumes", "/metadata/annotations/"))
               for op in verdict.patch)


def custom_predictor(*containers: dict[str, Any]) -> dict[str, Any]:
    """An InferenceService whose predictor is `containers` (KServe's custom predictor)."""
    obj = isvc()
    obj["spec"]["predictor"] = {"containers": [copy.deepcopy(c) for c in containers]}
    return obj


SERVER = {"name": "server", "image": "vllm/vllm-openai:v0.33.0", "command": SERVE,
          "resources": {"limits": {"nvidia.com/gpu": "8"}}}


@pytest.mark.parametrize(("containers", "index"), [
    ([SERVER], 0),  # the only container: KServe names it kserve-container
    ([{k: v for k, v in SERVER.items() if k != "name"}, {"name": "sidecar", "image": "busybox"}], 0),  # unnamed first
    ([{**SERVER, "name": ""}, {"name": "sidecar", "image": "busybox"}], 0),
], ids=["only-container-named-server", "unnamed-first-of-two", "empty-name-first-of-two"])
def test_the_container_kserves_defaulter_names_kserve_container_is_edited_where_it_is(
    containers: list[dict[str, Any]], index: int
) -> None:
    """KServe v0.20 CustomPredictor.Default renames it; the webhook may run first, and leaves the name alone."""
    obj = custom_predictor(*containers)
    out, verdict = run(obj)
    assert verdict.allowed, verdict.message
    c = out["spec"]["predictor"]["containers"][index]
    ns = parse_launch(c["command"])
    assert (ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size) == (True, 1, 8)
    assert c.get("name") == containers[index].get("name")  # renaming is KServe's
    assert all(op["path"].startswith((f"/spec/predictor/containers/{index}/", "/metadata/annotations/",
                                      "/spec/predictor/volumes"))  # the /dev/shm a custom container lacks
               for op in verdict.patch)
    off = copy.deepcopy(out)
    off["metadata"]["annotations"]["ep.enabled"] = "false"
    assert run(off)[0]["spec"] == obj["spec"]  # the undo points at the same container


def test_the_same_container_after_kserves_defaulter_renamed_it_gets_the_same_edit() -> None:
    before, _ = run(custom_predictor(SERVER))
    after, _ = run(custom_predictor({**SERVER, "name": "kserve-container"}))
    assert before["spec"]["predictor"]["containers"][0]["command"] == \
        after["spec"]["predictor"]["containers"][0]["command"]


@pytest.mark.parametrize("containers", [
    [{"name": "server", "image": "x"}, {"name": "sidecar", "image": "busybox"}],
    [{"name": "server", "image": "x"}, {"image": "busybox"}],  # only the first is renamed when unnamed
], ids=["two-named", "unnamed-second"])
def test_several_containers_none_of_which_kserve_will_run_are_denied(containers: list[dict[str, Any]]) -> None:
    verdict = mutate(custom_predictor(*containers))
    assert not verdict.allowed and "kserve-container" in verdict.message


# -- rule 2: launches ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["vllm", "serve", "/mnt/models"],
        ["/usr/local/bin/vllm", "serve", "/mnt/models"],
        ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/mnt/models"],
        ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/mnt/models"],
        ["python3.12", "-u", "-m", "vllm.entrypoints.openai.api_server", "--model", "/mnt/models"],
        ["/opt/venv/bin/python3", "-m", "vllm.entrypoints.openai.api_server"],
        ["python3", "-m", "vllm.entrypoints.cli.main", "serve", "/mnt/models"],
        ["env", "VLLM_USE_V1=1", "HF_HOME=/tmp", "vllm", "serve", "/mnt/models"],
        ["/usr/bin/env", "-u", "CUDA_VISIBLE_DEVICES", "vllm", "serve", "/mnt/models"],
        ["exec", "vllm", "serve", "/mnt/models"],
    ],
)
def test_vllm_launches_are_recognised_in_list_commands(command: list[str]) -> None:
    out, verdict = run(isvc(command=command))
    assert verdict.allowed, verdict.message
    ns = launched(out)
    assert (ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size) == (True, 1, 8)


@pytest.mark.parametrize(
    ("command", "found"),
    [
        (["/bin/start.sh", "--tp", "8"], "/bin/start.sh"),
        (["python3", "-m", "sglang.launch_server"], "python3 -m sglang.launch_server"),
        (["vllm", "bench", "serve"], "vllm bench serve"),
        (["bash", "/opt/run.sh"], "bash /opt/run.sh"),
    ],
)
def test_unrecognised_launches_are_denied_saying_what_was_found_and_expected(command: list[str], found: str) -> None:
    verdict = mutate(isvc(command=command))
    assert not verdict.allowed
    assert found in verdict.message and "vllm serve MODEL" in verdict.message


# -- rule 4: owned flags ----------------------------------------------------------------------


def test_already_correct_commands_get_no_patch_and_no_record() -> None:
    obj = isvc(command=["vllm", "serve", "m", "--enable-expert-parallel", "-tp", "1", "-dp", "8"])
    verdict = mutate(obj)
    assert verdict.allowed and verdict.patch == ()


def test_duplicate_owned_flags_leave_exactly_one_occurrence() -> None:
    cmd = SERVE + ["-tp", "8", "--tensor-parallel-size=4", "--data-parallel-size", "8", "-dp", "8"]
    out, verdict = run(isvc(command=cmd))
    new = model(out)["command"]
    assert new == SERVE + ["-tp", "1", "--data-parallel-size", "8", "--enable-expert-parallel"]
    assert "removed duplicate --tensor-parallel-size=4" in verdict.warnings


def test_an_owned_flag_before_an_opaque_word_moves_to_the_end_so_it_wins() -> None:
    script = 'vllm serve /mnt/models --tensor-parallel-size 8 $EXTRA_ARGS'
    out, _ = run(isvc(command=["sh", "-c", script]))
    assert model(out)["command"][2] == (
        "vllm serve /mnt/models $EXTRA_ARGS --enable-expert-parallel --tensor-parallel-size 1 --data-parallel-size 8"
    )


def test_reject_mode_names_a_shell_variable_and_the_negation() -> None:
    script = "vllm serve m --no-enable-expert-parallel -tp ${GPU_COUNT}"
    verdict = mutate(isvc(command=["bash", "-c", script]), Options(on_conflict="reject"))
    assert not verdict.allowed
    assert "--no-enable-expert-parallel" in verdict.message and "-tp ${GPU_COUNT}" in verdict.message


@pytest.mark.parametrize(
    "flags",
    [
        ["--data-parallel-size-local", "4"],
        ["-dpa", "10.0.0.1"],
        ["--headless"],
        ["--pipeline-parallel-size", "2"],
        ["-pp=2"],
    ],
)
def test_multi_node_and_pipeline_layouts_are_denied_rather_than_guessed(flags: list[str]) -> None:
    verdict = mutate(isvc(command=SERVE + flags))
    assert not verdict.allowed and flags[0] in verdict.message


def test_pipeline_parallel_size_one_is_fine() -> None:
    _, verdict = run(isvc(command=SERVE + ["-pp", "1"]))
    assert verdict.allowed


# -- rule 5: GPU count -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "requests", "dp"),
    [
        ({"nvidia.com/gpu": 8}, None, 8),
        ({"nvidia.com/gpu": "4"}, None, 4),
        ({"nvidia.com/gpu": "4"}, {"nvidia.com/gpu": "4"}, 4),
        (None, {"amd.com/gpu": "2"}, 2),
        ({"intel.com/gpu": "8000m"}, None, 8),
        ({"habana.ai/gaudi": "8"}, None, 8),
        ({"nvidia.com/gpualloc": "2", "nvidia.com/gpucores": "50", "nvidia.com/gpumem": "16000"}, None, 2),
        ({"cpu": "4", "memory": "64Gi", "nvidia.com/gpu": "1e1"}, None, 10),
        ({"nvidia.com/gpu": "8", "amd.com/gpu": "0"}, None, 8),  # a zero quantity asks for nothing
    ],
)
def test_gpu_count_comes_from_limits_else_requests(limits: Any, requests: Any, dp: int) -> None:
    out, _ = run(isvc(command=SERVE, limits=limits, requests=requests))
    assert launched(out).data_parallel_size == dp


@pytest.mark.parametrize(
    ("limits", "requests", "needles"),
    [
        ({"nvidia.com/gpu": "8"}, {"nvidia.com/gpu": "4"}, ["limits[nvidia.com/gpu]", "'8'", "'4'"]),
        ({"nvidia.com/gpu": "4", "amd.com/gpu": "4"}, None, ["amd.com/gpu", "nvidia.com/gpu", "one kind"]),
        ({"nvidia.com/gpu": "0.5"}, None, ["'0.5'", "fraction"]),
        ({"nvidia.com/gpu": "1500m"}, None, ["'1500m'", "fraction"]),
        ({"nvidia.com/gpu": "1"}, None, ["limits[nvidia.com/gpu]", "at least 2"]),
        ({"nvidia.com/gpu": 0}, None, ["gets none", "nvidia.com/gpu"]),
        ({"nvidia.com/gpu": "eight"}, None, ["'eight'", "not a quantity"]),
        ({"cpu": "8"}, None, ["gets none", "nvidia.com/gpu", "resources.claims"]),
        ({"nvidia.com/gpu": True}, None, ["not a quantity"]),
    ],
)
def test_unclear_gpu_requests_are_denied_naming_the_field_and_value(limits: Any, requests: Any, needles: list[str]) -> None:
    verdict = mutate(isvc(command=SERVE, limits=limits, requests=requests))
    assert not verdict.allowed
    for needle in needles:
        assert needle in verdict.message


def test_gpu_resource_keys_are_configurable() -> None:
    obj = isvc(command=SERVE, limits={"example.com/accelerator": "4", "nvidia.com/gpu": "8"})
    out, _ = run(obj, Options(gpu_resources=("example.com/accelerator",)))
    assert launched(out).data_parallel_size == 4


def test_max_data_parallel_size_is_enforced() -> None:
    verdict = mutate(isvc(command=SERVE), Options(max_data_parallel_size=4))
    assert not verdict.allowed and "exceeds" in verdict.message


# -- rule 9: warnings ---------------------------------------------------------------------------------


def test_warnings_are_short_and_say_what_changed() -> None:
    # vLLM 0.15.1 ignores unknown --eplb-config keys (0.16 refuses them): a long one is passed on, and noted
    ann = {"ep.eplb-config": '{"' + "x" * 300 + '": 1}', "ep.all2all-backend": "deepep_low_latency", "ep.eplb": "true",
           "ep.vllm-version": "0.15.1"}
    script = "GPU_COUNT=8\nvllm serve /mnt/models --tensor-parallel-size ${GPU_COUNT} --no-enable-expert-parallel"
    _, verdict = run(isvc(command=["bash", "-c", script], annotations=ann))
    assert "replaced --tensor-parallel-size ${GPU_COUNT} with 1" in verdict.warnings
    assert "removed --no-enable-expert-parallel" in verdict.warnings
    assert any(w.startswith("vLLM 0.15.1 ignores ep.eplb-config keys it does not know: xxx") for w in verdict.warnings)
    assert all(len(w) < 120 for w in verdict.warnings)


def test_audit_lists_the_changed_fields() -> None:
    _, verdict = run(isvc(command=SERVE))
    assert verdict.changed == ("spec.predictor.model.command", f"metadata.annotations[{UNDO_RECORD}]")


@pytest.mark.parametrize("key", ["ep.tensor-parallel-size", "ep.nodes"])
@pytest.mark.parametrize("value", ["3" * 5000, "0" * 5000 + "1"])
def test_a_number_annotation_of_thousands_of_digits_is_denied_not_converted(key: str, value: str) -> None:
    verdict = mutate(isvc(command=SERVE, annotations={key: value}))
    assert not verdict.allowed and f"annotation {key} is" in verdict.message
