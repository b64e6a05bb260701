"""Rules 7 and 8: the webhook's changes can be undone, and re-running changes nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.helpers import EXAMPLES, isvc, load_example, model, run
from tests.vllm_grammar import parse_launch
from webhook.admission.kinds import mutate
from webhook.core.annotations import UNDO_RECORD
from webhook.core.options import Options

EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
SCRIPT = "GPU_COUNT=$(nvidia-smi -L | wc -l)\nvllm serve /mnt/models \\\n  --tensor-parallel-size ${GPU_COUNT}\n"
CASES = {
    "list": isvc(command=["vllm", "serve", "/mnt/models", "-tp", "8"]),
    "script": isvc(command=["bash", "-c", SCRIPT, "bash"]),
    "args-only": isvc(args=["--max-model-len=4096"]),
    "no-args": isvc(),
    "python-args": isvc(command=["python3", "-m", "vllm.entrypoints.openai.api_server"], args=["--model=/m", "-dp=2"]),
}


def turn_off(obj: dict[str, Any], how: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    ann = obj["metadata"]["annotations"]
    if how == "false":
        ann["ep.enabled"] = "false"
    else:
        del ann["ep.enabled"]
    return obj


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_running_the_engine_on_its_own_output_changes_nothing(name: str) -> None:
    once, _ = run(load_example(name))
    verdict = mutate(copy.deepcopy(once))
    assert verdict.allowed and verdict.patch == () and verdict.warnings == ()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("how", ["false", "removed"])
def test_turning_ep_off_restores_command_and_args_exactly(case: str, how: str) -> None:
    original = CASES[case]
    on, _ = run(original)
    assert UNDO_RECORD in on["metadata"]["annotations"]
    off, verdict = run(turn_off(on, how))
    assert model(off) == model(original)  # command, args, and their absence
    assert UNDO_RECORD not in off["metadata"]["annotations"]
    assert any("restored" in w for w in verdict.warnings)
    again = mutate(copy.deepcopy(off))
    assert again.patch == ()


def test_a_new_gpu_limit_updates_the_data_parallel_size_from_the_original() -> None:
    on, _ = run(CASES["script"])
    on["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] = "4"
    updated, verdict = run(on)
    script = model(updated)["command"][2]
    assert script.count("--data-parallel-size") == 1 and "--data-parallel-size 4" in script
    assert "replaced --data-parallel-size 8 with 4" in verdict.warnings
    off, _ = run(turn_off(updated, "false"))
    assert model(off)["command"] == CASES["script"]["spec"]["predictor"]["model"]["command"]


def test_changing_the_tensor_parallel_annotation_recomputes_the_layout() -> None:
    on, _ = run(CASES["list"])
    on["metadata"]["annotations"]["ep.tensor-parallel-size"] = "4"
    updated, _ = run(on)
    ns = parse_launch(model(updated)["command"])
    assert (ns.tensor_parallel_size, ns.data_parallel_size) == (4, 2)


def test_a_command_edited_after_the_webhook_becomes_the_new_original() -> None:
    on, _ = run(CASES["list"])
    edited = copy.deepcopy(on)
    model(edited)["command"] = ["vllm", "serve", "/mnt/other-model", "--port", "9000"]
    again, _ = run(edited)
    assert parse_launch(model(again)["command"]).data_parallel_size == 8
    state = json.loads(again["metadata"]["annotations"][UNDO_RECORD])
    assert state["command"] == ["vllm", "serve", "/mnt/other-model", "--port", "9000"]
    off, _ = run(turn_off(again, "false"))
    assert model(off)["command"] == ["vllm", "serve", "/mnt/other-model", "--port", "9000"]


def test_turning_off_after_a_hand_edit_keeps_the_edit_and_drops_the_state() -> None:
    on, _ = run(CASES["list"])
    model(on)["command"].append("--port=1234")
    off, verdict = run(turn_off(on, "false"))
    assert model(off)["command"][-1] == "--port=1234"
    assert UNDO_RECORD not in off["metadata"]["annotations"]
    assert any("edits made since stay" in w for w in verdict.warnings)
    assert parse_launch(model(off)["command"]).enable_expert_parallel is False


def test_already_correct_commands_get_no_patch_and_no_state() -> None:
    obj = isvc(command=["vllm", "serve", "m", "--enable-expert-parallel", "-tp", "1", "-dp", "8"])
    verdict = mutate(obj)
    assert verdict.allowed and verdict.patch == ()


@pytest.mark.parametrize("bad", ["not json", "[]", '{"container": 1}', '{"container": "/x", "applied": "y", "command": [1]}'])
def test_a_tampered_state_annotation_is_denied_with_a_fix(bad: str) -> None:
    obj = isvc(command=["vllm", "serve", "m"], annotations={UNDO_RECORD: bad})
    verdict = mutate(obj)
    assert not verdict.allowed and UNDO_RECORD in verdict.message and "remove it" in verdict.message


def test_the_patch_touches_only_command_args_and_the_state_annotation() -> None:
    for obj in CASES.values():
        verdict = mutate(copy.deepcopy(obj))
        for op in verdict.patch:
            assert op["path"] in (
                "/spec/predictor/model/command",
                "/spec/predictor/model/args",
                "/metadata/annotations/vllm-ep-webhook.io~1original",
            )


def test_another_webhook_touching_the_mutated_object_keeps_the_undo_state() -> None:
    on, _ = run(CASES["python-args"])
    model(on)["args"].append("--max-model-len=4096")  # a second mutating webhook runs after ours
    again, verdict = run(on)
    assert model(again)["args"] == model(on)["args"]  # nothing to fix, nothing duplicated
    assert UNDO_RECORD in again["metadata"]["annotations"] and verdict.warnings == ()
    assert mutate(copy.deepcopy(again)).patch == ()
    off, _ = run(turn_off(again, "false"))
    # EP off takes back only the webhook's own change: the other webhook's flag is part of the intent
    assert model(off)["args"] == [*model(CASES["python-args"])["args"], "--max-model-len=4096"]


def test_reject_mode_still_follows_a_new_gpu_request_over_the_webhooks_own_flags() -> None:
    options = Options(on_conflict="reject")
    on, _ = run(CASES["args-only"], options)
    on["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] = "4"
    updated, verdict = run(on, options)
    assert verdict.allowed, verdict.message
    assert model(updated)["args"][-2:] == ["--data-parallel-size", "4"]
