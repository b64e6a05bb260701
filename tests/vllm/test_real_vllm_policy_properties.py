"""Property: in a forbid namespace nothing admitted runs EP; in an enforce one (no opt-out) nothing admitted runs
without it. Generated commands, scripts and env; each admitted object is executed as the kubelet would (env from
a ConfigMap given a generated run-time value) and parsed by the newest real vLLM release."""

from __future__ import annotations

import copy
import shlex
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.test_policy import ENFORCE, FORBID
from tests.e2e.kubelet import run_container
from tests.helpers import apply, isvc, model, stand_in_bin
from tests.vllm_releases import NEWEST, Judge, serve_argv
from webhook.admission.kinds import mutate

M = "/mnt/models"
CONFIG = "@CONFIG@"  # replaced by a file that switches EP on
SWITCHES = ["--enable-expert-parallel", "-ep", "--enable-expert", "--enable_expert_parallel",
            "--no-enable-expert-parallel", "--disable-expert-parallel"]
WORDS = st.sampled_from([
    *SWITCHES, "$(A)", "$(B)", "--additional-config.note", "--additional-config.note=1", "--config", CONFIG,
    "--max-model-len", "4096", "-tp", "1", "-dp", "8", "2", "--port", "8080",
])
VALUES = st.sampled_from([*SWITCHES, "--max-model-len=1024", "", "-dp 8 --enable-expert-parallel"])
ENV = st.one_of(st.none(), st.tuples(st.just("value"), VALUES), st.tuples(st.just("valueFrom"), VALUES))


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
"""Each example runs a shell and the real vLLM parser: tens of milliseconds."""


@st.composite
def objects(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    """An InferenceService (list command, or bash -c script) and the run-time values of its ConfigMap env."""
    words = draw(st.lists(WORDS, max_size=8))
    env: list[dict[str, Any]] = []
    run_time: dict[str, str] = {}
    for name in ("A", "B"):
        choice = draw(ENV)
        if choice is None:
            continue
        kind, value = choice
        if kind == "value":
            env.append({"name": name, "value": value})
        else:
            env.append({"name": name, "valueFrom": {"configMapKeyRef": {"name": "c", "key": name}}})
            run_time[name] = value
    if draw(st.booleans()):
        command = ["vllm", "serve", M, *words]
    else:
        command = ["bash", "-c", "exec vllm serve " + M + " " + " ".join(
            w if w.startswith("$(") else shlex.quote(w) for w in words) + draw(st.sampled_from(["", ' "$A"', " $B"]))]
    obj = isvc(command=command, enabled=None)
    if env:
        model(obj)["env"] = env
    return obj, run_time


def _vllm_runs_ep(judge: Judge, container: dict[str, Any], run_time: dict[str, str]) -> bool | None:
    """EP as vLLM runs it, or None when vLLM would not start at all (then nothing runs either way)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = work / "ep.yaml"
        config.write_text("enable-expert-parallel: true\n")
        c = copy.deepcopy(container)
        c["command"] = [w.replace(CONFIG, str(config)) for w in c["command"]]
        c["env"] = [{"name": e["name"], "value": run_time[e["name"]]} if "valueFrom" in e else e
                    for e in c.get("env", [])]
        try:
            argv = run_container(c, stand_in_bin(work / "bin"), work)
        except AssertionError:
            return None  # the shell failed before vLLM
        result = judge.judge(serve_argv(argv), 8)
        return bool(result.parallel["enable_expert_parallel"]) if result.ok else None


@PROPERTY
@given(objects())
def test_nothing_admitted_in_a_forbid_namespace_runs_ep(
    vllm_judges: dict[str, Judge], generated: tuple[dict[str, Any], dict[str, str]]
) -> None:
    obj, run_time = generated
    verdict = mutate(copy.deepcopy(obj), FORBID)
    if verdict.allowed:
        out = apply(obj, verdict)
        assert _vllm_runs_ep(vllm_judges[NEWEST], model(out), run_time) is not True, (model(out), run_time)


@PROPERTY
@given(objects())
def test_nothing_admitted_in_an_enforce_namespace_runs_without_ep(
    vllm_judges: dict[str, Judge], generated: tuple[dict[str, Any], dict[str, str]]
) -> None:
    obj, run_time = generated
    verdict = mutate(copy.deepcopy(obj), ENFORCE)
    not_applicable = any(w.startswith("EP not applied") for w in verdict.warnings)  # passes untouched, by design
    if verdict.allowed and not not_applicable:
        out = apply(obj, verdict)
        assert _vllm_runs_ep(vllm_judges[NEWEST], model(out), run_time) is not False, (model(out), run_time,
                                                                                          verdict.warnings)
