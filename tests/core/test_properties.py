"""Property tests: for generated InferenceServices the engine's contract holds."""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import apply, isvc, model
from tests.vllm_grammar import GrammarError, parse_launch, parser
from webhook.vllm import shell
from webhook.admission.kinds import mutate
from webhook.core.annotations import UNDO_RECORD
from webhook.core.verdict import MAX_WARNING_LENGTH, Verdict

ALLOWED_PATHS = (
    "/spec/predictor/model/command",
    "/spec/predictor/model/args",
    "/metadata/annotations/vllm-ep-webhook.io~1original",
)

# -- generators ---------------------------------------------------------------------

int_text = st.integers(min_value=1, max_value=16).map(str)
value = st.one_of(int_text, st.just("${GPU_COUNT}"), st.just("$N"))
owned_flag = st.one_of(
    st.tuples(st.sampled_from(["--tensor-parallel-size", "-tp", "--tensor_parallel_size"]), int_text),
    st.tuples(st.sampled_from(["--data-parallel-size", "-dp", "--data_parallel_size"]), int_text),
    st.tuples(st.sampled_from(["--enable-expert-parallel", "-ep", "--no-enable-expert-parallel"])),
)
other_flag = st.one_of(
    st.tuples(st.just("--port"), st.integers(1024, 65535).map(str)),
    st.tuples(st.just("--max-model-len"), st.sampled_from(["4096", "32768"])),
    st.tuples(st.just("--trust-remote-code")),
    st.tuples(st.just("--served-model-name"), st.sampled_from(["{{.Name}}", "qwen"])),
)


@st.composite
def flag_words(draw: st.DrawFn, with_equals: bool = True) -> list[str]:
    out: list[str] = []
    for group in draw(st.lists(st.one_of(owned_flag, other_flag), max_size=6)):
        if len(group) == 2 and with_equals and draw(st.booleans()):
            out.append(f"{group[0]}={group[1]}")
        else:
            out.extend(group)
    return out


launch_prefix = st.sampled_from(
    [
        ["vllm", "serve", "/mnt/models"],
        ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/mnt/models"],
        ["python", "-m", "vllm.entrypoints.cli.main", "serve", "/mnt/models"],
    ]
)
gpu_limits = st.one_of(
    st.integers(2, 64).map(lambda n: {"nvidia.com/gpu": n}),
    st.integers(2, 64).map(lambda n: {"amd.com/gpu": str(n)}),
)
annotations = st.fixed_dictionaries(
    {},
    optional={
        "ep.tensor-parallel-size": st.sampled_from(["1", "2", "4"]),
        "ep.eplb": st.sampled_from(["true", "false"]),
        "ep.all2all-backend": st.sampled_from(["pplx", "deepep_low_latency"]),
    },
)


@st.composite
def list_isvcs(draw: st.DrawFn) -> dict[str, Any]:
    words = draw(launch_prefix) + draw(flag_words())
    split = draw(st.integers(0, len(words)))
    command, args = (words[:split] or None), (words[split:] or None)
    if command is not None and len(command) < 2:
        command, args = words, None
    return isvc(command=command, args=args, limits=draw(gpu_limits), annotations=draw(annotations))


@st.composite
def script_isvcs(draw: st.DrawFn) -> dict[str, Any]:
    flag_lines = [" ".join(shell.quote(w) if not w.startswith("$") else w for w in pair) for pair in _pairs(draw(flag_words(False)))]
    joiner = draw(st.sampled_from([" ", " \\\n  "]))
    lines = ["set -e", "# start", "GPU_COUNT=$(nvidia-smi -L | wc -l)"]
    lines.append(joiner.join(["exec vllm serve /mnt/models", *flag_lines]))
    script = "\n".join(lines) + draw(st.sampled_from(["", "\n"]))
    tail = draw(st.sampled_from([[], ["bash"], ["bash", "--port", "1"]]))
    return isvc(command=["bash", "-c", script, *tail], limits=draw(gpu_limits), annotations=draw(annotations))


def _pairs(words: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    for w in words:
        if w.startswith("-") or not out:
            out.append([w])
        else:
            out[-1].append(w)
    return out


def check_contract(obj: dict[str, Any], verdict: Verdict) -> dict[str, Any]:
    out = apply(obj, verdict)
    assert all(op["path"] in ALLOWED_PATHS for op in verdict.patch)
    assert all(len(w) <= MAX_WARNING_LENGTH for w in verdict.warnings)
    rest_before = copy.deepcopy(obj)
    rest_after = copy.deepcopy(out)
    for o in (rest_before, rest_after):
        for key in ("command", "args"):
            o["spec"]["predictor"]["model"].pop(key, None)
        o["metadata"]["annotations"].pop(UNDO_RECORD, None)
    assert rest_before == rest_after
    again = mutate(copy.deepcopy(out))
    assert again.allowed and again.patch == (), again.patch
    off = copy.deepcopy(out)
    off["metadata"]["annotations"]["ep.enabled"] = "false"
    restored = apply(off, mutate(copy.deepcopy(off)))
    assert model(restored) == model(obj)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(list_isvcs())
def test_list_commands_obey_the_contract_and_vllm_sees_the_ep_layout(obj: dict[str, Any]) -> None:
    verdict = mutate(copy.deepcopy(obj))
    if not verdict.allowed:
        return
    out = check_contract(obj, verdict)
    m = model(out)
    ns = parse_launch(list(m.get("command") or []) + list(m.get("args") or []))
    gpus = int(next(iter(out["spec"]["predictor"]["model"]["resources"]["limits"].values())))
    tp = int(obj["metadata"]["annotations"].get("ep.tensor-parallel-size", "1"))
    assert (ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size) == (True, tp, gpus // tp)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script_isvcs())
def test_scripts_obey_the_contract_with_one_occurrence_of_each_owned_flag(obj: dict[str, Any]) -> None:
    verdict = mutate(copy.deepcopy(obj))
    if not verdict.allowed:
        return
    out = check_contract(obj, verdict)
    [*_, launch] = shell.parse(model(out)["command"][2])
    names = [w.prefix.partition("=")[0].replace("_", "-") for w in launch.words]
    assert names.count("--tensor-parallel-size") + names.count("-tp") == 1
    assert names.count("--data-parallel-size") + names.count("-dp") == 1
    assert names.count("--enable-expert-parallel") + names.count("-ep") == 1
    assert "--no-enable-expert-parallel" not in names
    assert model(out)["command"][3:] == model(obj)["command"][3:]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_arbitrary_json_is_never_patched_a_non_object_is_denied_and_an_object_not_asking_passes(value: Any) -> None:
    verdict = mutate(value)
    assert verdict.patch == () and verdict.changed == ()
    if not isinstance(value, dict):
        assert not verdict.allowed and "expected an InferenceService" in verdict.message
    elif "metadata" not in value:  # nothing asks for EP
        assert verdict.allowed and verdict.warnings == ()


@st.composite
def damaged_isvcs(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Valid-looking objects with one field replaced by something odd, and the path of that field."""
    obj = isvc(command=["vllm", "serve", "m"])
    paths = [
        ("metadata",), ("metadata", "annotations"), ("metadata", "annotations", "ep.enabled"),
        ("spec",), ("spec", "predictor"), ("spec", "predictor", "model"),
        ("spec", "predictor", "model", "command"), ("spec", "predictor", "model", "args"),
        ("spec", "predictor", "model", "resources"), ("spec", "predictor", "model", "resources", "limits"),
        ("spec", "predictor", "model", "resources", "limits", "nvidia.com/gpu"),
        ("metadata", "annotations", "ep.tensor-parallel-size"), ("metadata", "annotations", UNDO_RECORD),
        ("metadata", "annotations", "ep.eplb-config"),
    ]
    path = draw(st.sampled_from(paths))
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = draw(json_values)
    return obj, path


HOW_TO_FIX = re.compile(r"\b(must|needs?|remove|write|expected)\b")


def ep_layout(container: dict[str, Any]) -> tuple[bool, int, int]:
    """(expert parallel, TP, DP) as vLLM would parse the container's command and args."""
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    ns = parse_launch(command + args) if command else parser(False).parse_args(args)
    return ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size


@settings(max_examples=400, deadline=None)
@given(damaged_isvcs())
def test_damaged_objects_are_denied_naming_the_field_and_the_fix_or_get_the_full_ep_layout(
    damaged: tuple[dict[str, Any], tuple[str, ...]],
) -> None:
    obj, path = damaged
    verdict = mutate(copy.deepcopy(obj))
    if not verdict.allowed:
        fields = {".".join(path[:k]) for k in range(min(2, len(path)), len(path) + 1)} | {path[-1]}
        assert any(f in verdict.message for f in fields), (path, verdict.message)
        assert HOW_TO_FIX.search(verdict.message), verdict.message
        return
    if not verdict.patch:
        return  # passed untouched: what was damaged did not ask for EP
    out = apply(obj, verdict)
    assert mutate(copy.deepcopy(out)).patch == ()  # the result is stable
    try:
        ep_layout(model(obj))
    except GrammarError:
        return  # vLLM would refuse the launch as written (e.g. a stray '' argument) with or without EP
    gpus = int(model(out)["resources"]["limits"]["nvidia.com/gpu"])
    assert ep_layout(model(out)) == (True, 1, gpus)
