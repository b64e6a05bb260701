"""A policy that holds (issue 23): `forbid` and `enforce` decide on what vLLM really runs.

Each bypass is shown first: the object as written, executed as the kubelet and the shell would (env from a
ConfigMap given its run-time value), and parsed by the newest real vLLM release, runs EP in a forbid namespace
(or runs without it in an enforce one). Then the webhook's answer: a denial naming the construct, or an admitted
object that, executed the same way, runs what the policy says.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.core.test_policy import ENFORCE, FORBID
from tests.e2e.kubelet import run_container
from tests.helpers import apply, isvc, model, stand_in_bin
from tests.kserve.test_llminferenceservice import llmisvc, vllm_of
from tests.vllm_releases import NEWEST, Judge, serve_argv
from webhook.admission.kinds import mutate
from webhook.kserve.selection import Runtimes
from webhook.kserve.servingruntime import spec_from_object

M = "/mnt/models"
SERVE = ["vllm", "serve", M]
FROM_CONFIGMAP = {"configMapKeyRef": {"name": "vllm-extra", "key": "flags"}}


def runs_ep(judges: dict[str, Judge], container: dict[str, Any], tmp_path: Path,
            run_time_env: dict[str, str] | None = None, gpus: int = 8) -> bool:
    """Whether vLLM runs EP when the kubelet starts `container`, its ConfigMap env having `run_time_env`."""
    c = copy.deepcopy(container)
    c["env"] = [({"name": e["name"], "value": run_time_env[e["name"]]} if "valueFrom" in e and run_time_env
                 and e["name"] in run_time_env else e) for e in c.get("env", [])]
    argv = run_container(c, stand_in_bin(tmp_path / "bin"), tmp_path)
    result = judges[NEWEST].judge(serve_argv(argv), gpus)
    assert result.ok, result.error
    return bool(result.parallel["enable_expert_parallel"])


def with_env(obj: dict[str, Any], *env: dict[str, Any]) -> dict[str, Any]:
    model(obj)["env"] = list(env)
    return obj


# -- forbid: every way vLLM could get EP is read, and what cannot be read is denied -----------------------------

FORBID_CASES: dict[str, tuple[dict[str, Any], dict[str, str] | None, str]] = {
    "shell variable": (
        with_env(isvc(command=["bash", "-c", f"exec vllm serve {M} $EXTRA_ARGS"], enabled=None),
                 {"name": "EXTRA_ARGS", "value": "--enable-expert-parallel --data-parallel-size 8"}),
        None, "expands at run time"),
    "kubelet expansion, literal env": (
        with_env(isvc(command=[*SERVE, "$(EP_FLAG)", "-dp", "8"], enabled=None),
                 {"name": "EP_FLAG", "value": "--enable-expert-parallel"}),
        None, "sets --enable-expert-parallel"),
    "kubelet expansion, configmap": (
        with_env(isvc(command=[*SERVE, "$(EP_FLAG)", "-dp", "8"], enabled=None),
                 {"name": "EP_FLAG", "valueFrom": FROM_CONFIGMAP}),
        {"EP_FLAG": "--enable-expert-parallel"}, "set only at run time"),
    "abbreviated flag": (isvc(command=[*SERVE, "--enable-expert", "-dp", "8"], enabled=None), None, "--enable-expert"),
}


@pytest.mark.parametrize("case", FORBID_CASES)
def test_forbid_denies_ep_that_only_the_run_time_reveals(
    vllm_judges: dict[str, Judge], case: str, tmp_path: Path
) -> None:
    obj, run_time_env, needle = FORBID_CASES[case]
    assert runs_ep(vllm_judges, model(obj), tmp_path, run_time_env)  # the bypass, as it runs
    verdict = mutate(copy.deepcopy(obj), FORBID)
    assert not verdict.allowed and "forbidden" in verdict.message and needle in verdict.message, verdict.message


@pytest.mark.parametrize(
    ("obj", "needle"),
    [
        (isvc(command=[*SERVE, "--config", "/etc/vllm/config.yaml"], enabled=None), "--config"),
        (isvc(command=["bash", "/scripts/start.sh"], enabled=None), "cannot read"),
    ],
    ids=["config file", "script file"],
)
def test_forbid_denies_flags_in_files_the_webhook_cannot_open(obj: dict[str, Any], needle: str) -> None:
    verdict = mutate(obj, FORBID)
    assert not verdict.allowed and needle in verdict.message and "cannot tell" in verdict.message


def test_forbid_reads_every_container_of_the_predictor_pod(vllm_judges: dict[str, Judge], tmp_path: Path) -> None:
    obj = isvc(args=["--max-model-len=4096"], enabled=None)
    side = {"name": "second", "image": "vllm/vllm-openai:v0.33.0", "command": [*SERVE, "-ep", "-dp", "8"]}
    obj["spec"]["predictor"]["containers"] = [side]
    assert runs_ep(vllm_judges, side, tmp_path)
    verdict = mutate(copy.deepcopy(obj), FORBID)
    assert not verdict.allowed and "spec.predictor.containers[0]" in verdict.message
    # a sidecar that is not vLLM is no reason to deny
    obj["spec"]["predictor"]["containers"] = [{"name": "proxy", "image": "envoyproxy/envoy", "command": ["envoy"]}]
    assert mutate(obj, FORBID).allowed


def test_forbid_reads_the_runtimes_own_args() -> None:
    runtime = spec_from_object("ServingRuntime", {
        "apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
        "metadata": {"name": "ep-runtime", "namespace": "llm"},
        "spec": {"supportedModelFormats": [{"name": "vLLM", "autoSelect": True}],
                 "containers": [{"name": "kserve-container", "image": "vllm/vllm-openai:v0.33.0",
                                 "command": ["python", "-m", "vllm.entrypoints.openai.api_server"],
                                 "args": ["--enable-expert-parallel", "--data-parallel-size", "8"]}]},
    })
    assert runtime is not None
    obj = isvc(args=["--max-model-len=4096"], enabled=None)
    model(obj)["runtime"] = "ep-runtime"
    verdict = mutate(obj, FORBID, Runtimes(namespaced=(runtime,)))
    assert not verdict.allowed and "--enable-expert-parallel" in verdict.message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda o: o["spec"]["template"]["containers"][0].update(
            args=["--max-model-len=8192 --enable-expert-parallel", "--data-parallel-size=8"]),
         "--enable-expert-parallel"),
        (lambda o: o["spec"]["template"]["containers"][0].update(
            env=[{"name": "VLLM_ADDITIONAL_ARGS", "value": "--enable-expert-parallel"}]), "--enable-expert-parallel"),
        (lambda o: o["spec"].update(baseRefs=[{"name": "team-defaults"}]), "team-defaults"),
    ],
    ids=["args split by the presets eval", "VLLM_ADDITIONAL_ARGS", "baseRefs"],
)
def test_forbid_reads_llminferenceservice_args_as_the_presets_eval_does(
    change: Any, needle: str, tmp_path: Path
) -> None:
    obj = llmisvc(enabled=None)
    change(obj)
    if "baseRefs" not in obj["spec"]:
        env = {e["name"]: e["value"] for e in obj["spec"]["template"]["containers"][0].get("env", [])}
        assert vllm_of(obj, tmp_path, env=env).enable_expert_parallel is True  # the bypass, through the preset
    verdict = mutate(obj, FORBID)
    assert not verdict.allowed and needle in verdict.message, verdict.message


def test_forbid_still_admits_what_runs_without_ep(vllm_judges: dict[str, Judge], tmp_path: Path) -> None:
    obj = with_env(isvc(command=[*SERVE, "$(TP)"], enabled=None), {"name": "TP", "value": "--max-model-len=4096"})
    assert mutate(obj, FORBID).allowed
    assert not runs_ep(vllm_judges, model(obj), tmp_path)


# -- enforce without opt-out: what vLLM runs has EP, or the object is denied ------------------------------------

ENFORCE_CASES: dict[str, tuple[dict[str, Any], dict[str, str] | None, str]] = {
    "negation from a configmap": (
        with_env(isvc(command=[*SERVE, "--enable-expert-parallel", "-tp", "1", "-dp", "8", "$(VLLM_EXTRA)"],
                      enabled=None), {"name": "VLLM_EXTRA", "valueFrom": FROM_CONFIGMAP}),
        {"VLLM_EXTRA": "--no-enable-expert-parallel"}, "set only at run time"),
    "a function named vllm": (
        isvc(command=["bash", "-c", 'vllm() { command vllm "$@" --no-enable-expert-parallel; }\n'
                                    f"vllm serve {M} --enable-expert-parallel -tp 1 -dp 8"], enabled=None),
        None, "redefines vllm"),
}


@pytest.mark.parametrize("case", ENFORCE_CASES)
def test_enforce_denies_what_would_run_without_ep(
    vllm_judges: dict[str, Judge], case: str, tmp_path: Path
) -> None:
    obj, run_time_env, needle = ENFORCE_CASES[case]
    assert not runs_ep(vllm_judges, model(obj), tmp_path, run_time_env)  # the bypass, as it runs
    verdict = mutate(copy.deepcopy(obj), ENFORCE)
    assert not verdict.allowed and "required" in verdict.message and needle in verdict.message, verdict.message


def test_a_trailing_dotted_flag_would_swallow_the_webhooks_first_flag(
    vllm_judges: dict[str, Judge], tmp_path: Path
) -> None:
    obj = isvc(command=[*SERVE, "--additional-config.note"], enabled=None)
    naive = copy.deepcopy(obj)
    model(naive)["command"] += ["--enable-expert-parallel", "--tensor-parallel-size", "1", "--data-parallel-size", "8"]
    assert not runs_ep(vllm_judges, model(naive), tmp_path)  # the first appended flag became the note's value
    verdict = mutate(obj, ENFORCE)
    assert not verdict.allowed and "--additional-config.note=VALUE" in verdict.message, verdict.message


def test_an_llminferenceservice_arg_with_a_comment_would_hide_the_webhooks_flags(tmp_path: Path) -> None:
    obj = llmisvc(args=["--max-model-len=4096", "#", "note"], enabled=None)
    verdict = mutate(copy.deepcopy(obj), ENFORCE)
    assert not verdict.allowed and "#" in verdict.message


def test_a_zero_quantity_of_another_gpu_kind_is_no_second_kind(vllm_judges: dict[str, Judge], tmp_path: Path) -> None:
    obj = isvc(command=SERVE, limits={"nvidia.com/gpu": "8", "amd.com/gpu": "0"}, enabled=None)
    verdict = mutate(copy.deepcopy(obj), ENFORCE)
    assert verdict.allowed and verdict.patch, verdict.warnings
    assert runs_ep(vllm_judges, model(apply(obj, verdict)), tmp_path)


def test_enforce_still_admits_hidden_words_when_the_webhooks_flags_come_last(
    vllm_judges: dict[str, Judge], tmp_path: Path
) -> None:
    obj = isvc(command=["bash", "-c", f'exec vllm serve "${{MODEL_PATH:-{M}}}" --max-model-len 4096'], enabled=None)
    verdict = mutate(copy.deepcopy(obj), ENFORCE)
    assert verdict.allowed, verdict.message
    assert runs_ep(vllm_judges, model(apply(obj, verdict)), tmp_path)


# -- LLMInferenceServiceConfigs in the user's namespace ------------------------------------------------------


def preset(name: str, args: list[str]) -> dict[str, Any]:
    return {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceServiceConfig",
            "metadata": {"name": name, "namespace": "llm"},
            "spec": {"template": {"containers": [{"name": "main", "args": args}]}}}


@pytest.mark.parametrize("name", ["team-defaults", "config-llm-template"])
def test_forbid_reads_the_presets_of_the_users_namespace(name: str) -> None:
    obj = llmisvc(enabled=None)
    if name == "team-defaults":
        obj["spec"]["baseRefs"] = [{"name": name}]
    ep = {name: preset(name, ["--enable-expert-parallel", "--data-parallel-size=8"])}
    verdict = mutate(copy.deepcopy(obj), FORBID, llm_configs=ep)
    assert not verdict.allowed and f"LLMInferenceServiceConfig {name}" in verdict.message, verdict.message
    plain = {name: preset(name, ["--max-model-len=4096"])}
    assert mutate(copy.deepcopy(obj), FORBID, llm_configs=plain).allowed


def test_base_refs_not_in_the_users_namespace_are_the_platforms() -> None:
    obj = llmisvc(enabled=None)
    obj["spec"]["baseRefs"] = [{"name": "kserve-wide"}]
    assert mutate(copy.deepcopy(obj), FORBID, llm_configs={}).allowed  # found only in KServe's namespace
    assert not mutate(copy.deepcopy(obj), FORBID).allowed  # without a view of the namespace: unknown


def test_more_presets_than_the_webhook_reads_are_unknown_to_forbid() -> None:
    from webhook.kserve.llminferenceservice import MAX_PRESETS

    plain = {f"config-llm-{i}": preset(f"config-llm-{i}", ["--max-model-len=4096"]) for i in range(MAX_PRESETS + 1)}
    verdict = mutate(llmisvc(enabled=None), FORBID, llm_configs=plain)
    assert not verdict.allowed and f"at most {MAX_PRESETS}" in verdict.message
    assert mutate(llmisvc(enabled=None), FORBID, llm_configs=dict(list(plain.items())[:MAX_PRESETS])).allowed
