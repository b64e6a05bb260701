"""Bounded work for any input: oversize and deeply nested input is a denial naming the limit, never an exception.

Each hostile input here once raised (RecursionError, ValueError) or cost seconds of CPU and hundreds of MiB
in one `mutate` call; the figures for the worst ones are printed by bench/worst_inputs.py. The property test
at the end throws generated objects, annotations and scripts at `mutate`: it must answer every one of them.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import isvc, model
from webhook.admission.kinds import mutate
from webhook.core.annotations import MAX_EPLB_CONFIG_DEPTH, MAX_EPLB_CONFIG_LENGTH
from webhook.core.gpus import MAX_QUANTITY_LENGTH
from webhook.core.options import Options
from webhook.vllm.launch import MAX_LAUNCH_ARGUMENTS
from webhook.vllm.shell import MAX_NESTING, MAX_SCRIPT_LENGTH, MAX_SCRIPT_WORDS

VLLM = ["vllm", "serve", "/mnt/models"]


def script_isvc(script: str, *after: str) -> dict[str, Any]:
    return isvc(command=["bash", "-c", script, *after])


def denied(obj: dict[str, Any], *needles: str) -> str:
    verdict = mutate(obj)
    assert not verdict.allowed, verdict.patch
    assert all(n in verdict.message for n in needles), verdict.message
    return verdict.message


# -- bash -c scripts ------------------------------------------------------------------

def test_command_substitution_nested_3000_deep_is_denied_naming_the_depth_limit() -> None:
    message = denied(script_isvc("vllm serve /mnt/models --served-model-name " + "$(" * 3000 + ")" * 3000),
                     f"deeper than {MAX_NESTING} levels", "script line 1")
    assert "separate variables" in message  # how to fix it


def test_nesting_a_real_script_uses_stays_readable() -> None:
    deep = "$(echo " * 10 + "x" + ")" * 10
    verdict = mutate(script_isvc(f"NAME={deep}\nexec vllm serve /mnt/models --served-model-name \"$NAME\""))
    assert verdict.allowed and "--enable-expert-parallel" in model_script(verdict, 0)


def model_script(verdict: Any, index: int) -> str:
    values = [op["value"] for op in verdict.patch if op["path"] == "/spec/predictor/model/command"]
    return str(values[0][2]) if values else ""


def test_a_script_over_the_length_limit_is_denied_before_it_is_read() -> None:
    line = "echo hello world this is an ordinary line\n"
    script = line * (2**20 // len(line)) + "exec vllm serve /mnt/models"
    denied(script_isvc(script), f"{len(script):,} characters", f"{MAX_SCRIPT_LENGTH:,}", "ConfigMap")


def test_a_script_at_the_length_limit_is_still_edited() -> None:
    line = 'echo "waiting for the model cache in ${CACHE_DIR:-/mnt/models}, attempt $i"\n'  # as dense as KServe's
    body = line * ((MAX_SCRIPT_LENGTH - 100) // len(line))
    verdict = mutate(script_isvc(body + "exec vllm serve /mnt/models"))
    assert verdict.allowed and "--enable-expert-parallel" in model_script(verdict, 0)


def test_a_script_of_more_words_than_the_limit_is_denied() -> None:
    script = "echo " + "a " * MAX_SCRIPT_WORDS + "\nexec vllm serve /mnt/models"
    assert len(script) <= MAX_SCRIPT_LENGTH
    denied(script_isvc(script), f"more than {MAX_SCRIPT_WORDS} words")


def test_many_forwarded_positionals_times_many_items_is_denied_not_multiplied() -> None:
    n = 1000  # 1,000 "$@" times 1,000 items: a million arguments (1,500 of each took 2.6 s and 270 MiB)
    obj = isvc(command=["bash", "-c", "exec vllm serve /mnt/models " + '"$@" ' * n, "bash"], args=["--x"] * n)
    denied(obj, f"{n} \"$@\" of {n} items", f"{MAX_LAUNCH_ARGUMENTS:,} arguments", 'write "$@" once')


def test_one_forwarded_positional_with_many_items_is_still_edited() -> None:
    obj = isvc(command=["bash", "-c", 'exec vllm serve /mnt/models "$@"', "bash"],
               args=["--max-model-len", "4096"] * 400)
    verdict = mutate(obj)
    assert verdict.allowed and verdict.patch


def test_a_launch_of_more_items_than_the_limit_is_denied_wherever_they_are() -> None:
    items = ["--max-model-len", "4096"] * 300_000  # 3.5 MiB of JSON: was 2.5 s of CPU
    for command, args in ((VLLM, items), (None, items), (VLLM + items, None)):
        denied(isvc(command=command, args=args), "spec.predictor.model.command and .args: ",
               f"{len(items) + (3 if command else 0):,} arguments",
               f"{MAX_LAUNCH_ARGUMENTS:,}", "--config")


def test_a_launch_just_under_the_item_limit_is_still_edited() -> None:
    obj = isvc(command=VLLM, args=["--max-model-len", "4096"] * ((MAX_LAUNCH_ARGUMENTS - 3) // 2))
    verdict = mutate(obj)
    assert verdict.allowed and verdict.patch


# -- values ---------------------------------------------------------------------------

def test_a_gpu_quantity_of_thousands_of_digits_is_denied_naming_the_limit() -> None:
    for quantity in ("1" * 4401, "8" + "0" * 5000 + "m", "1" * 4401 + "e2"):
        message = denied(isvc(command=VLLM, limits={"nvidia.com/gpu": quantity}), "limits[nvidia.com/gpu] is",
                         f"{len(quantity):,} characters", f"the {MAX_QUANTITY_LENGTH} the webhook reads")
        assert len(message) < 300  # the value is shown cut, not whole


def test_gpu_quantities_beyond_what_kubernetes_holds_are_denied_not_counted() -> None:
    # 1e308 GPUs became a 309-digit --data-parallel-size; 10**5000 could not even be printed
    for quantity in (1e308, 10**5000, "1e30", "9" * 40, -(2**64)):
        denied(isvc(command=VLLM, limits={"nvidia.com/gpu": quantity}), "limits[nvidia.com/gpu] is",
               "larger than 2^63-1 in magnitude")
    denied(isvc(command=VLLM, limits={"nvidia.com/gpu": [[0] * 1000] * 1000}), "limits[nvidia.com/gpu] is a list")


def test_gpu_quantities_people_write_still_count() -> None:
    for quantity in ("8", "8000m", "0008", "8e0"):
        verdict = mutate(isvc(command=VLLM, limits={"nvidia.com/gpu": quantity}))
        assert verdict.allowed and "--data-parallel-size" in str(verdict.patch), quantity


def test_a_deeply_nested_eplb_config_is_denied_naming_the_limit() -> None:
    for config in ("[" * 100_000, '{"window_size":' + "[" * 1000 + "]" * 1000 + "}"):
        denied(isvc(command=VLLM, annotations={"ep.eplb-config": config}), "ep.eplb-config")
    nested = '{"a":' * (MAX_EPLB_CONFIG_DEPTH + 1) + "1" + "}" * (MAX_EPLB_CONFIG_DEPTH + 1)
    denied(isvc(command=VLLM, annotations={"ep.eplb-config": nested}), f"deeper than {MAX_EPLB_CONFIG_DEPTH} levels")
    long = '{"policy":"' + "x" * MAX_EPLB_CONFIG_LENGTH + '"}'
    denied(isvc(command=VLLM, annotations={"ep.eplb-config": long}), f"over the {MAX_EPLB_CONFIG_LENGTH:,}")


def test_an_eplb_config_with_brackets_inside_strings_is_read() -> None:
    config = '{"note":"[[[[[[[[[[[[{{{{{{\\"", "window_size":1000}'  # vLLM 0.15.1 ignores a key it does not know
    verdict = mutate(isvc(command=VLLM, annotations={"ep.eplb-config": config, "ep.eplb": "true",
                                                     "ep.vllm-version": "0.15.1"}))
    assert verdict.allowed and "window_size" in str(verdict.patch)


# -- property: no input raises --------------------------------------------------------

SHELL_PIECES = st.sampled_from([
    " ", "\n", "\\\n", "vllm serve /mnt/models", "exec ", "--tensor-parallel-size 2", "-dp", "$(", ")", "${", "}",
    "`", "'", '"', '"$@"', "$@", "$*", "$'", "\\", "<<EOF\n", "\nEOF\n", "<<-X", "# c", ";", "&&", "|", "(", "<(",
    "2>", ">", "*", "[", "=", "$GPU", "eval ", "bash -c ", "sh", "case", "in", "esac", "for", "do", "done",
])
scripts = st.one_of(
    st.lists(SHELL_PIECES, max_size=40).map("".join),
    st.tuples(st.sampled_from(["$(", "${", '"$(', "`", "$((", "<("]), st.integers(0, 3000)).map(lambda t: t[0] * t[1]),
    st.integers(0, 400).map(lambda n: "vllm serve /m " + '"$@" ' * n),
)
long_digits = st.integers(1, 6000).map(lambda n: "9" * n)
values: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=30), long_digits, st.integers(), st.floats(), st.booleans(), st.none(),
    st.integers(0, 200_000).map(lambda n: "[" * n), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
annotations = st.dictionaries(
    st.sampled_from(["ep.enabled", "ep.tensor-parallel-size", "ep.all2all-backend", "ep.eplb", "ep.eplb-config",
                     "ep.vllm-version", "ep.nodes", "vllm-ep-webhook.io/original"]),
    st.one_of(st.just("true"), values),
)
gpu_values = st.one_of(values, st.sampled_from(["8", "8000m", "1e1", "1Ki", "-8", ".5"]))


@st.composite
def hostile_objects(draw: st.DrawFn) -> dict[str, Any]:
    items = draw(st.one_of(
        st.tuples(st.just(["bash", "-c"]), scripts).map(lambda t: [*t[0], t[1]]),
        st.lists(st.one_of(st.sampled_from(["vllm", "serve", "/m", "-tp", "2", '"$@"', "--", "-c", "bash"]),
                           st.text(max_size=8)), max_size=12),
    ))
    tail = draw(st.lists(st.sampled_from(["bash", "--port", "1", "-tp", "4", "x"]), max_size=draw(st.integers(0, 3000))))
    obj = isvc(command=items or None, args=tail or None, annotations=draw(annotations),
               limits={draw(st.sampled_from(["nvidia.com/gpu", "amd.com/gpu", "cpu"])): draw(gpu_values)},
               requests=draw(st.none() | st.just({"nvidia.com/gpu": draw(gpu_values)})))
    if draw(st.booleans()):
        obj["kind"] = "LLMInferenceService"
        obj["apiVersion"] = "serving.kserve.io/v1alpha1"
        obj["spec"] = {"template": {"containers": [{"name": "main", **model(obj)}]}, "parallelism": draw(values)}
    return obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_objects(), st.sampled_from(["optIn", "enforce", "forbid"]))
def test_no_object_annotation_or_script_makes_mutate_raise(obj: dict[str, Any], mode: Any) -> None:
    verdict = mutate(copy.deepcopy(obj), Options(mode=mode))
    assert verdict.allowed or verdict.message  # an answer: allowed, or denied saying why


def test_an_undo_record_nested_thousands_deep_is_the_tampered_record_denial() -> None:
    # found by the property test below: json.loads raised RecursionError
    obj = isvc(command=VLLM, annotations={"vllm-ep-webhook.io/original": "[" * 5000})
    denied(obj, "vllm-ep-webhook.io/original", "not valid; remove it")


def test_in_a_forbidding_namespace_a_script_beyond_a_limit_is_denied_not_taken_for_one_without_ep() -> None:
    padding = "echo padding the script out\n" * (MAX_SCRIPT_LENGTH // 28 + 1)
    obj = script_isvc(padding + "exec vllm serve /mnt/models --enable-expert-parallel")
    obj["metadata"]["annotations"].pop("ep.enabled")
    verdict = mutate(obj, Options(mode="forbid"))
    assert not verdict.allowed and f"{MAX_SCRIPT_LENGTH:,}" in verdict.message
    small = script_isvc("exec vllm serve /mnt/models")
    small["metadata"]["annotations"].pop("ep.enabled")
    assert mutate(small, Options(mode="forbid")).allowed
