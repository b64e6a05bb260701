"""Property: in a forbid namespace nothing admitted runs EP; in an enforce one (no opt-out) nothing admitted runs
without it. Generated commands, scripts and env; each admitted object is executed as the kubelet would (env from
a ConfigMap given a generated run-time value) and parsed by the newest real vLLM release."""

from __future__ import annotations

import copy
import shlex
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.test_policy import ENFORCE, FORBID
from tests.e2e.kubelet import run_container
from tests.helpers import apply, isvc, model, stand_in_bin
from tests.vllm_releases import NEWEST, Judge, serve_argv
from webhook.admission.kinds import mutate
from webhook.core.options import Options

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


@pytest.mark.parametrize(("options", "ruled_out"), [(FORBID, True), (ENFORCE, False)],
                         ids=["forbid: nothing admitted runs EP", "enforce: nothing admitted runs without EP"])
@PROPERTY
@given(objects())
def test_nothing_admitted_runs_what_the_namespaces_mode_rules_out(
    vllm_judges: dict[str, Judge], options: Options, ruled_out: bool,
    generated: tuple[dict[str, Any], dict[str, str]],
) -> None:
    """vLLM's EP state (True on, False off, None unknown) is never the one the mode rules out. An object enforce
    passes untouched because EP cannot apply to it (its "EP not applied" warning) is left as it is, by design."""
    obj, run_time = generated
    verdict = mutate(copy.deepcopy(obj), options)
    if verdict.allowed and not any(w.startswith("EP not applied") for w in verdict.warnings):
        out = apply(obj, verdict)
        assert _vllm_runs_ep(vllm_judges[NEWEST], model(out), run_time) is not ruled_out, (
            model(out), run_time, verdict.warnings)
