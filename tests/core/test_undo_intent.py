"""Undo that restores what the user means (issue 23, items 6 and 7).

An edit made while EP is on (a flag's value changed, a container inserted before the one the webhook
edited, a role added) is kept when EP goes off; only the webhook's own change comes out. Every object
is executed as the pod would run it (the kubelet's `$(VAR)` expansion; a `bash -c` script run with
stand-ins; an LLMInferenceService merged with KServe's preset and run) and the argv vLLM gets is parsed:
by the grammar model here, and by the newest real vLLM release in the `vllm_judges` tests at the end.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonpointer import resolve_pointer

from tests.e2e.kubelet import container_argv, container_env
from tests.helpers import isvc, recorded_argv, run, stand_in_bin
from tests.kserve.test_llminferenceservice import llmisvc
from tests.kserve_presets import container_argv as preset_argv
from tests.kserve_presets import run as run_preset
from tests.vllm_grammar import parse_launch
from tests.vllm_releases import NEWEST, Judge, serve_argv
from webhook.admission.kinds import mutate
from webhook.core import undo
from webhook.core.annotations import UNDO_RECORD

IMAGE = "vllm/vllm-openai:v0.33.0"
SCRIPT = "exec vllm serve /mnt/models \\\n  --max-model-len 4096 \\\n  --tensor-parallel-size 8\n"


def custom(command: list[str]) -> dict[str, Any]:
    """An InferenceService with a custom predictor container (KServe's defaulter already ran: it is named)."""
    obj = isvc()
    obj["spec"]["predictor"] = {"containers": [{
        "name": "kserve-container", "image": IMAGE, "command": command,
        "resources": {"limits": {"nvidia.com/gpu": "8"}},
    }]}
    return obj


def served(obj: dict[str, Any]) -> dict[str, Any]:
    """The container KServe runs: `model`, else the first `kserve-container`."""
    predictor = obj["spec"]["predictor"]
    if "model" in predictor:
        return predictor["model"]  # type: ignore[no-any-return]
    return next(c for c in predictor["containers"] if c.get("name") == "kserve-container")  # type: ignore[no-any-return]


def launched(obj: dict[str, Any], tmp_path: Path, role: str = "decode") -> list[str]:
    """The argv vLLM is started with, `vllm serve` first, as the pod runs it."""
    folder = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    if obj["kind"] == "LLMInferenceService":
        return run_preset(preset_argv(obj, role), folder)
    container = served(obj)
    argv = container_argv(container, container_env(container, {}))
    if argv[0] in ("bash", "sh"):
        return recorded_argv(argv, stand_in_bin(folder / "bin"), folder)
    return argv


def parsed(obj: dict[str, Any], tmp_path: Path, role: str = "decode") -> Any:
    return parse_launch(launched(obj, tmp_path, role))


def admit(obj: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The object as stored after the webhook, and the verdict; re-admitting it must change nothing."""
    out, verdict = run(obj)
    assert verdict.allowed, verdict.message
    assert mutate(copy.deepcopy(out)).patch == ()
    return out, verdict


def ep(obj: dict[str, Any], value: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["annotations"]["ep.enabled"] = value
    return obj


def record(obj: dict[str, Any]) -> dict[str, Any]:
    value = json.loads(obj["metadata"]["annotations"][UNDO_RECORD])
    assert isinstance(value, dict)
    return value


# -- the cases: an object, and the user's edit while EP is on -------------------------------------


def _edit_list(obj: dict[str, Any]) -> None:
    command = served(obj)["command"]
    command[command.index("4096")] = "32768"


def _edit_script(obj: dict[str, Any]) -> None:
    command = served(obj)["command"]
    command[2] = command[2].replace("4096", "32768")


def _edit_llm_args(obj: dict[str, Any]) -> None:
    args = obj["spec"]["template"]["containers"][0]["args"]
    args[args.index("--max-model-len=4096")] = "--max-model-len=32768"


EDITS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], None]]] = {
    "list": (lambda: isvc(command=["vllm", "serve", "/mnt/models", "--max-model-len", "4096", "-tp", "8"]), _edit_list),
    "script": (lambda: isvc(command=["bash", "-c", SCRIPT]), _edit_script),
    "custom": (lambda: custom(["vllm", "serve", "/mnt/models", "--max-model-len", "4096", "-tp", "8"]), _edit_list),
    "llmisvc-args": (lambda: llmisvc(args=["--max-model-len=4096"]), _edit_llm_args),
}


@pytest.mark.parametrize("readmitted", [True, False], ids=["readmitted", "edit-and-off"])
@pytest.mark.parametrize("case", sorted(EDITS))
def test_an_edit_made_while_ep_is_on_survives_turning_it_off(case: str, readmitted: bool, tmp_path: Path) -> None:
    build, edit = EDITS[case]
    original = build()
    before = parsed(original, tmp_path)
    on, _ = admit(original)
    assert parsed(on, tmp_path).enable_expert_parallel is True
    edited = copy.deepcopy(on)
    edit(edited)  # 4096 -> 32768, the webhook's flags kept
    if readmitted:
        edited, verdict = admit(edited)  # EP still on: nothing to change but the record
        ns = parsed(edited, tmp_path)
        assert (ns.enable_expert_parallel, ns.max_model_len) == (True, 32768)
        assert verdict.warnings == ()
    off, verdict = admit(ep(edited, "false"))
    ns = parsed(off, tmp_path)
    assert ns.enable_expert_parallel is False and ns.max_model_len == 32768  # the edit stays, EP goes
    assert (ns.tensor_parallel_size, ns.data_parallel_size) == (before.tensor_parallel_size, before.data_parallel_size)
    assert UNDO_RECORD not in off["metadata"]["annotations"]
    assert any(w.startswith("EP is off") for w in verdict.warnings)
    if obj_is_llm(off):
        assert "parallelism" not in off["spec"]  # the webhook's parallelism is gone with it


def obj_is_llm(obj: dict[str, Any]) -> bool:
    return obj["kind"] == "LLMInferenceService"


def test_the_record_holds_the_edit_not_the_old_original(tmp_path: Path) -> None:
    on, _ = admit(EDITS["list"][0]())
    edited = copy.deepcopy(on)
    _edit_list(edited)
    again, _ = admit(edited)
    assert record(again)["command"] == ["vllm", "serve", "/mnt/models", "--max-model-len", "32768", "-tp", "8"]


def test_an_edit_over_the_webhooks_own_words_keeps_the_edit_less_the_ep_switch(tmp_path: Path) -> None:
    on, _ = admit(EDITS["list"][0]())
    edited = copy.deepcopy(on)
    command = served(edited)["command"]
    command[command.index("--data-parallel-size") + 1] = "4"  # the user rewrites a value the webhook wrote
    off, verdict = admit(ep(edited, "false"))
    ns = parsed(off, tmp_path)
    assert ns.enable_expert_parallel is False and ns.data_parallel_size == 4 and ns.max_model_len == 4096
    assert any("removed --enable-expert-parallel" in w for w in verdict.warnings), verdict.warnings


# -- a container inserted before kserve-container ---------------------------------------------------

SIDECAR = {"name": "log-shipper", "image": "busybox:1.36", "command": ["sh", "-c", "tail -F /var/log/x"]}


@pytest.mark.parametrize("readmitted", [True, False], ids=["readmitted", "insert-and-off"])
def test_a_container_inserted_before_kserve_container_does_not_misdirect_undo(readmitted: bool, tmp_path: Path) -> None:
    original = EDITS["custom"][0]()
    on, _ = admit(original)
    assert "/spec/predictor/containers/kserve-container" in json.dumps(record(on))  # by name, not index
    inserted = copy.deepcopy(on)
    inserted["spec"]["predictor"]["containers"].insert(0, copy.deepcopy(SIDECAR))
    if readmitted:
        again, verdict = admit(inserted)
        assert again == inserted and verdict.patch == ()  # the record still finds kserve-container
    off, verdict = admit(ep(inserted, "false"))
    containers = off["spec"]["predictor"]["containers"]
    assert containers[0] == SIDECAR and served(off) == served(original)  # restored exactly, the sidecar untouched
    assert "volumes" not in off["spec"]["predictor"]  # the webhook's /dev/shm went too
    ns = parsed(off, tmp_path)
    assert ns.enable_expert_parallel is False and ns.tensor_parallel_size == 8
    assert UNDO_RECORD not in off["metadata"]["annotations"]


def _old_format(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as an earlier version left it: the record's container keys as array indices, its digest
    taken over those (`undo.digest` of the fields by pointer, as that version wrote it)."""
    obj = copy.deepcopy(obj)
    ann = obj["metadata"]["annotations"]
    text = ann[UNDO_RECORD].replace("/containers/kserve-container", "/containers/0") \
        .replace("/containers/main/", "/containers/0/")
    data = json.loads(text)
    pointers = list(data["fields"]) if "fields" in data else [f"{data['container']}/{k}" for k in ("command", "args")]
    data["applied"] = undo.digest({p: resolve_pointer(obj, p, None) for p in pointers})
    ann[UNDO_RECORD] = json.dumps(data)
    return obj


@pytest.mark.parametrize(("case", "pointer", "inserted"), [
    ("custom", "/spec/predictor/containers/0", False),
    ("custom", "/spec/predictor/containers/0", True),
    ("llmisvc-args", "/spec/template/containers/0/args", False),
], ids=["in-place", "container-inserted", "llmisvc"])
def test_a_record_written_by_an_earlier_version_still_undoes(case: str, pointer: str, inserted: bool,
                                                              tmp_path: Path) -> None:
    original = EDITS[case][0]()
    on, _ = admit(original)
    old = _old_format(on)
    assert pointer in old["metadata"]["annotations"][UNDO_RECORD]
    assert mutate(copy.deepcopy(old)).patch == ()  # an old record as the webhook left it: nothing to do
    expected = copy.deepcopy(original["spec"])
    if inserted:
        old["spec"]["predictor"]["containers"].insert(0, copy.deepcopy(SIDECAR))
        expected["predictor"]["containers"].insert(0, copy.deepcopy(SIDECAR))
    off, _ = admit(ep(old, "false"))
    assert off["spec"] == expected  # the container restored exactly, a sidecar inserted since untouched
    assert parsed(off, tmp_path).enable_expert_parallel is False


# -- a role added while EP is on ----------------------------------------------------------------------


@pytest.mark.parametrize("readmitted", [True, False], ids=["readmitted", "add-and-off"])
def test_a_role_added_while_ep_is_on_is_undone_with_the_rest(readmitted: bool, tmp_path: Path) -> None:
    original = llmisvc(args=["--max-model-len=4096"])
    on, _ = admit(original)
    added = copy.deepcopy(on)
    prefill = {"name": "main", "args": ["--max-model-len=2048"], "resources": {"limits": {"nvidia.com/gpu": "4"}}}
    added["spec"]["prefill"] = {"template": {"containers": [copy.deepcopy(prefill)]}}
    if readmitted:
        added, _ = admit(added)
        for role, dp in (("decode", 8), ("prefill", 4)):
            ns = parsed(added, tmp_path, role)
            assert (ns.enable_expert_parallel, ns.data_parallel_size) == (True, dp)
    off, _ = admit(ep(added, "false"))
    assert "parallelism" not in off["spec"] and "parallelism" not in off["spec"]["prefill"]
    assert off["spec"]["template"] == original["spec"]["template"]
    assert off["spec"]["prefill"]["template"]["containers"] == [prefill]
    for role, length in (("decode", 4096), ("prefill", 2048)):
        ns = parsed(off, tmp_path, role)
        assert (ns.enable_expert_parallel, ns.data_parallel_size, ns.max_model_len) == (False, 1, length)


# -- any edit away from the webhook's words survives undo ----------------------------------------------

PAIRS = (("--max-model-len", "4096"), ("--port", "8080"), ("--host", "0.0.0.0"), ("--gpu-memory-utilization", "0.9"),
         ("--shutdown-timeout", "30"), ("--api-server-count", "2"))


@st.composite
def edits(draw: st.DrawFn) -> tuple[list[tuple[str, str]], str, int, str, bool]:
    """Original flag pairs (a `-tp 8` the webhook rewrites in place among them), and an edit: change a
    value, delete a pair, or insert one (anywhere among the pairs, or after the webhook's own flags)."""
    pairs = draw(st.lists(st.sampled_from(PAIRS), unique=True, min_size=1, max_size=5))
    pairs.insert(draw(st.integers(0, len(pairs))), ("-tp", "8"))
    kind = draw(st.sampled_from(["change", "delete", "insert"]))
    mine = [i for i, p in enumerate(pairs) if p[0] != "-tp"]
    at = draw(st.sampled_from(mine)) if kind != "insert" else draw(st.integers(0, len(pairs) + 1))
    value = draw(st.sampled_from(["1", "9", "32"]))
    return pairs, kind, at, value, draw(st.booleans())


def _words(obj: dict[str, Any], script: bool) -> list[str]:
    command = served(obj)["command"]
    return command[2].split(" ") if script else command  # type: ignore[no-any-return]


@settings(max_examples=60, deadline=None)
@given(case=edits(), script=st.booleans())
def test_any_edit_away_from_the_webhooks_words_survives_undo(
        case: tuple[list[tuple[str, str]], str, int, str, bool], script: bool) -> None:
    pairs, kind, at, value, readmitted = case
    head = ["exec", "vllm", "serve", "/mnt/models"] if script else ["vllm", "serve", "/mnt/models"]
    words = head + [w for p in pairs for w in p]
    original = isvc(command=["bash", "-c", " ".join(words)] if script else words)
    on, _ = admit(original)
    edited, expected = copy.deepcopy(on), list(pairs)
    command = _words(edited, script)
    if kind == "insert":
        # after the pair `at` of the original, or (at = len + 1) after the webhook's flags
        where = len(command) if at > len(pairs) else len(head) + 2 * at
        command[where:where] = ["--ssl-certfile", f"/tls/{value}.pem"]
        expected.insert(min(at, len(pairs)), ("--ssl-certfile", f"/tls/{value}.pem"))
    else:
        start = len(head) + 2 * at
        if kind == "change":
            command[start + 1] = expected[at][1] + value
            expected[at] = (expected[at][0], command[start + 1])
        else:
            del command[start:start + 2]
            del expected[at]
    if script:
        served(edited)["command"][2] = " ".join(command)
    if readmitted:
        edited, _ = admit(edited)
    off, verdict = admit(ep(edited, "false"))
    assert _words(off, script) == head + [w for p in expected for w in p], verdict.warnings
    assert parse_launch(_words(off, script)[1:] if script else _words(off, script)).enable_expert_parallel is False


def test_an_edit_inside_a_long_rewritten_run_falls_back_to_the_edit_less_ep() -> None:
    # -tp first and 400 flags after it: the webhook's change (TP in place, EP appended) spans more than
    # rebase.ALIGNED units, so an edit inside it is not aligned word by word
    flags = [w for i in range(400) for w in (f"--additional-config.k{i}", str(i))]
    original = isvc(command=["vllm", "serve", "/mnt/models", "-tp", "8", *flags])
    on, _ = admit(original)
    edited = copy.deepcopy(on)
    command = served(edited)["command"]
    command[command.index("--additional-config.k200") + 1] = "edited"
    off, verdict = admit(ep(edited, "false"))
    command = served(off)["command"]
    assert "--enable-expert-parallel" not in command and "edited" in command
    assert any("removed --enable-expert-parallel" in w for w in verdict.warnings), verdict.warnings


# -- the newest real vLLM release judges the results ---------------------------------------------------


def _judge(judges: dict[str, Judge], argv: list[str], gpus: int) -> Any:
    verdict = judges[NEWEST].judge(serve_argv(argv), gpus)
    assert verdict.ok, verdict.error
    return verdict


@pytest.mark.parametrize("case", sorted(EDITS))
def test_real_vllm_runs_the_users_edit_without_ep_after_undo(
        vllm_judges: dict[str, Judge], case: str, tmp_path: Path) -> None:
    build, edit = EDITS[case]
    on, _ = admit(build())
    edited = copy.deepcopy(on)
    edit(edited)
    edited, _ = admit(edited)
    verdict = _judge(vllm_judges, launched(edited, tmp_path), 8)
    assert verdict.parallel["enable_expert_parallel"] is True and verdict.parsed["max_model_len"] == 32768
    off, _ = admit(ep(edited, "false"))
    verdict = _judge(vllm_judges, launched(off, tmp_path), 8)
    assert verdict.parallel["enable_expert_parallel"] is False and verdict.parsed["max_model_len"] == 32768
    assert verdict.parallel["data_parallel_size"] == 1


def test_real_vllm_after_container_insertion_and_role_addition(vllm_judges: dict[str, Judge], tmp_path: Path) -> None:
    on, _ = admit(EDITS["custom"][0]())
    on["spec"]["predictor"]["containers"].insert(0, copy.deepcopy(SIDECAR))
    off, _ = admit(ep(on, "false"))
    p = _judge(vllm_judges, launched(off, tmp_path), 8).parallel
    assert (p["enable_expert_parallel"], p["tensor_parallel_size"], p["data_parallel_size"]) == (False, 8, 1)

    llm, _ = admit(llmisvc(args=["--max-model-len=4096"]))
    llm["spec"]["prefill"] = {"template": {"containers": [
        {"name": "main", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}
    llm, _ = admit(llm)
    assert _judge(vllm_judges, launched(llm, tmp_path, "prefill"), 4).parallel["enable_expert_parallel"] is True
    off, _ = admit(ep(llm, "false"))
    for role, gpus in (("decode", 8), ("prefill", 4)):
        p = _judge(vllm_judges, launched(off, tmp_path, role), gpus).parallel
        assert (p["enable_expert_parallel"], p["data_parallel_size"]) == (False, 1)
