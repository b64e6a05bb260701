"""Real vLLM releases judge: the facts the webhook depends on, and the commands it writes.

Each release's own parser and ParallelConfig (tests/vllm_releases.py) decide; nothing here models vLLM.
The facts are those of ../shared/vllm/README.md, checked against the releases themselves, and the model
the fast tests use (tests/vllm_grammar.py) is checked against the newest release.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import yaml

import pytest
from hypothesis import HealthCheck, given, settings

from tests.core.test_properties import list_isvcs
from tests.helpers import (
    apply, huggingfaceserver_vllm_args, isvc, json_after, kserve_container, model, recorded_argv, run,
    shipped_runtime_docs, shipped_runtimes, stand_in_bin,
)
from webhook.cli.main import main as cli_main
from webhook.kserve import shipped
from webhook.vllm import flags
from webhook.kserve.images import release_of as hf_release_of
from webhook.admission.kinds import mutate
from tests.vllm_grammar import GrammarError, parse_launch
from tests.vllm_releases import NEWEST, RELEASES, Judge, serve_argv, version

M = "/mnt/models"


def _on(judges: dict[str, Judge], release: str, argv: list[str], gpus: int = 8, env: dict[str, str] | None = None,
        entry: str = "serve") -> Any:
    return judges[release].judge(argv, gpus, env, entry)


# -- facts of ../shared/vllm/README.md, per release ------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_a_unique_prefix_of_a_flag_is_that_flag(vllm_judges: dict[str, Judge], release: str) -> None:
    verdict = _on(vllm_judges, release, [M, "--tensor-parallel", "4", "--enable-expert-parallel", "-dp", "2"])
    assert verdict.ok, verdict.error
    assert verdict.parsed["tensor_parallel_size"] == 4


@pytest.mark.parametrize("release", RELEASES)
def test_an_ambiguous_prefix_stops_vllm_before_it_starts(vllm_judges: dict[str, Judge], release: str) -> None:
    verdict = _on(vllm_judges, release, [M, "--data-parallel-s", "4"])
    assert (verdict.ok, verdict.stage) == (False, "parse")
    assert "ambiguous option" in verdict.error


@pytest.mark.parametrize("release", RELEASES)
def test_the_short_ep_flag_exists_from_0_14(vllm_judges: dict[str, Judge], release: str) -> None:
    verdict = _on(vllm_judges, release, [M, "-ep", "-dp", "8"])
    if version(release) >= (0, 14):
        assert verdict.ok and verdict.parallel["enable_expert_parallel"] is True, verdict.error
    else:
        assert verdict.stage == "parse"


@pytest.mark.parametrize("release", RELEASES)
def test_the_all2all_backend_flag_exists_from_0_11_1(vllm_judges: dict[str, Judge], release: str) -> None:
    verdict = _on(vllm_judges, release, [M, "-dp", "8", "--enable-expert-parallel",
                                         "--all2all-backend", "deepep_high_throughput"])
    if version(release) >= (0, 11, 1):
        assert verdict.ok and verdict.parallel["all2all_backend"] == "deepep_high_throughput", verdict.error
    else:
        assert (verdict.stage, "unrecognized arguments" in verdict.error) == ("parse", True)


@pytest.mark.parametrize("release", RELEASES)
def test_disable_expert_parallel_exists_from_0_33(vllm_judges: dict[str, Judge], release: str) -> None:
    verdict = _on(vllm_judges, release, [M, "-dp", "8", "--enable-expert-parallel", "--disable-expert-parallel"])
    if version(release) >= (0, 33):
        assert verdict.ok and verdict.parallel["enable_expert_parallel"] is False, verdict.error
    else:
        assert verdict.stage == "parse"


@pytest.mark.parametrize("release", [r for r in RELEASES if version(r) >= (0, 10, 2)])
def test_redundant_experts_without_eplb_are_refused_at_start_up(vllm_judges: dict[str, Judge], release: str) -> None:
    verdict = _on(vllm_judges, release, [M, "-dp", "8", "--enable-expert-parallel",
                                         "--eplb-config", '{"num_redundant_experts": 4}'])
    assert (verdict.ok, verdict.stage) == (False, "config")
    assert "num_redundant_experts" in verdict.error


@pytest.mark.parametrize("release", [r for r in RELEASES if version(r) >= (0, 10, 2)])
def test_unknown_eplb_keys_are_refused_from_0_16(vllm_judges: dict[str, Judge], release: str) -> None:
    verdict = _on(vllm_judges, release, [M, "-dp", "8", "--enable-expert-parallel", "--enable-eplb",
                                         "--eplb-config", '{"window_size": 500, "redundant": 4}'])
    if version(release) >= (0, 16):
        assert not verdict.ok and "redundant" in verdict.error
    else:
        assert verdict.ok, verdict.error


@pytest.mark.parametrize("release", [r for r in RELEASES if version(r) >= (0, 11, 1)])
def test_external_load_balancing_with_one_data_parallel_rank_is_refused(vllm_judges: dict[str, Judge], release: str) -> None:
    verdict = _on(vllm_judges, release, [M, "-tp", "4", "--enable-expert-parallel", "-dpe"], gpus=4)
    assert (verdict.ok, verdict.stage) == (False, "config")


@pytest.mark.parametrize("release", [r for r in RELEASES if version(r) >= (0, 10, 2)])
def test_a_dotted_eplb_key_replaces_an_earlier_eplb_config(vllm_judges: dict[str, Judge], release: str) -> None:
    verdict = _on(vllm_judges, release, [M, "-dp", "8", "--enable-expert-parallel", "--enable-eplb",
                                         "--eplb-config.num_redundant_experts", "8",
                                         "--eplb-config", '{"window_size": 500}'])
    assert verdict.ok, verdict.error
    assert verdict.parallel["eplb_config"]["num_redundant_experts"] == 8


# -- what the webhook writes -----------------------------------------------------------------------------

SERVE = ["vllm", "serve", M]
LIST_CASES = {
    "plain": (isvc(command=SERVE), 8, 1),
    "tp 2 over a hand-written tp 8": (isvc(command=SERVE + ["--tensor-parallel-size", "8"],
                                           annotations={"ep.tensor-parallel-size": "2"}), 8, 2),
    "negation and underscores": (isvc(command=SERVE + ["--no-enable-expert-parallel", "--data_parallel_size=2"]), 8, 1),
    "four gpus, eplb": (isvc(command=SERVE, limits={"nvidia.com/gpu": "4"}, annotations={"ep.eplb": "true"}), 4, 1),
}


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("case", LIST_CASES)
def test_a_list_command_the_webhook_edits_starts_ep_over_the_pods_gpus(
    vllm_judges: dict[str, Judge], release: str, case: str
) -> None:
    obj, gpus, tp = LIST_CASES[case]
    out, verdict = run(obj)
    assert verdict.allowed, verdict.message
    result = _on(vllm_judges, release, serve_argv(model(out)["command"]), gpus)
    assert result.ok, result.error
    p = result.parallel
    assert (p["enable_expert_parallel"], p["tensor_parallel_size"], p["data_parallel_size"]) == (True, tp, gpus // tp)


@pytest.mark.parametrize("release", RELEASES)
def test_a_custom_predictors_only_container_named_server_starts_ep_over_the_pods_gpus(
    vllm_judges: dict[str, Judge], release: str
) -> None:
    """Issue 20.1: KServe's defaulter renames the only container kserve-container and runs it; the
    webhook edits it whether it runs before that defaulter (name `server`) or after."""
    for name in ("server", "kserve-container"):
        obj = isvc()
        obj["spec"]["predictor"] = {"containers": [{
            "name": name, "image": f"vllm/vllm-openai:v{release}", "command": [*SERVE, "--max-model-len", "4096"],
            "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}
        out, verdict = run(obj)
        assert verdict.allowed, verdict.message
        result = _on(vllm_judges, release, serve_argv(out["spec"]["predictor"]["containers"][0]["command"]))
        assert result.ok, result.error
        p = result.parallel
        assert (p["enable_expert_parallel"], p["tensor_parallel_size"], p["data_parallel_size"]) == (True, 1, 8)


@pytest.mark.parametrize("flags", [(), ("--no-default-runtimes",)], ids=["shipped-runtimes", "turned-off"])
def test_offline_mutate_without_runtimes_plans_for_the_huggingfaceserver_kserve_runs(
    vllm_judges: dict[str, Judge], flags: tuple[str, ...], tmp_path: Path
) -> None:
    """Issue 20.2: modelFormat huggingface, args only, 8 GPUs, no runtimes given; judged by the vLLM release
    that KServe v0.20.0's huggingfaceserver image bundles."""
    obj = isvc(args=["--max-model-len=4096"])
    model(obj)["modelFormat"] = {"name": "huggingface"}
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["mutate", "-f", "-", *flags], stdin=io.StringIO(json.dumps(obj)), stdout=out, stderr=err) == 0
    image = next(r.image for r in shipped.RUNTIMES if r.name == "kserve-huggingfaceserver")
    release = ".".join(map(str, hf_release_of(image) or ()))
    assert release in RELEASES
    # KServe merges it with kserve-huggingfaceserver (runtime args first), the pod executes that
    runtime = next(d for d in shipped_runtime_docs() if d["metadata"]["name"] == "kserve-huggingfaceserver")
    merged, env = kserve_container(yaml.safe_load(out.getvalue()), runtime)
    argv = recorded_argv(merged, stand_in_bin(tmp_path / "bin"), tmp_path, env)
    result = _on(vllm_judges, release, huggingfaceserver_vllm_args(argv, 8), entry="api_server")
    assert result.ok, result.error
    p = result.parallel
    if flags:  # planned for plain vLLM: TP 1 x DP 8, which huggingfaceserver turns into TP 8 x DP 8
        assert p["tensor_parallel_size"] * p["data_parallel_size"] == 64
    else:
        assert (p["enable_expert_parallel"], p["tensor_parallel_size"], p["data_parallel_size"]) == (True, 8, 1)
        assert result.parsed["max_model_len"] == 4096


# -- the fast model against the newest release -------------------------------------------------------------

CORPUS = [
    [M, "--tensor-parallel-size", "2", "--data-parallel-size", "4", "--enable-expert-parallel"],
    [M, "-tp=2", "-dp", "4", "-ep"],
    [M, "--tensor_parallel_size=4", "--data_parallel_size", "2", "--enable-expert-parallel"],
    [M, "--enable-expert-parallel", "--no-enable-expert-parallel", "-dp", "8"],
    [M, "--tensor-parallel", "4", "--data-parallel-size", "2"],
    [M, "--data-parallel-s", "4"],
    [M, "-tp", "2", "-tp", "4", "-dp", "2"],
    [M, "--enable-expert", "-dp", "8"],
    [M, "--all2all-backend", "deepep_low_latency", "-dp", "8", "-ep"],
]


@pytest.mark.parametrize("argv", CORPUS, ids=lambda a: " ".join(a[1:]))
def test_the_fast_grammar_model_reads_what_the_newest_release_reads(vllm_judges: dict[str, Judge], argv: list[str]) -> None:
    real = _on(vllm_judges, NEWEST, argv)
    try:
        ns = parse_launch(["vllm", "serve", *argv])
        model_view: Any = (ns.tensor_parallel_size, ns.data_parallel_size, bool(ns.enable_expert_parallel))
    except GrammarError:
        model_view = "refused"
    real_view: Any = "refused" if real.stage == "parse" else (
        real.parsed["tensor_parallel_size"], real.parsed["data_parallel_size"],
        bool(real.parsed["enable_expert_parallel"]))
    assert model_view == real_view


# -- the release table of the product against the releases themselves ----------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_the_release_table_says_what_each_release_accepts(vllm_judges: dict[str, Judge], release: str) -> None:
    from webhook.vllm.releases import parse_version, profile

    facts = vllm_judges[release].facts()
    options = set(facts["options"])
    p = profile(parse_version(release))  # type: ignore[arg-type]
    assert p is not None
    assert p.short_ep == ("-ep" in options)
    assert p.disable_flags == ("--disable-expert-parallel" in options)
    assert p.eplb_config == ("--eplb-config" in options)
    assert p.external_lb_flag == ("-dpe" in options)
    assert (p.all2all_by != "env") == ("--all2all-backend" in options)
    if facts["all2all"] is not None:  # 0.11.x lists "None" (its unset default) among the choices
        assert sorted(p.all2all_backends) == [c for c in facts["all2all"] if c != "None"]
    if p.eplb_config:
        assert sorted(p.eplb_keys) == facts["eplb_keys"]
        assert {k: sorted(v) for k, v in p.eplb_choices.items()} == facts["eplb_choices"]
        if "use_async" in p.eplb_keys:
            assert p.eplb_async_default == facts["eplb_async_default"]


def test_the_webhook_accepts_exactly_the_backends_of_the_newest_release(vllm_judges: dict[str, Judge]) -> None:
    from webhook.vllm.flags import ALL2ALL_BACKENDS

    assert list(ALL2ALL_BACKENDS) == vllm_judges[NEWEST].facts()["all2all"]


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("negation", ["--disable-expert-parallel", "--no-enable-expert-parallel"])
def test_a_hand_written_negation_of_ep_in_either_spelling_is_removed(
    vllm_judges: dict[str, Judge], release: str, negation: str
) -> None:
    out, verdict = run(isvc(command=SERVE + ["-tp", "1", "--enable-expert-parallel", negation]))
    assert verdict.allowed, verdict.message
    assert negation not in model(out)["command"]
    result = _on(vllm_judges, release, serve_argv(model(out)["command"]))
    assert result.ok and result.parallel["enable_expert_parallel"] is True, result.error


# -- writing for the release that runs --------------------------------------------------------------------

def _eplb(config: str) -> dict[str, str]:
    """Annotations turning EPLB on with this `--eplb-config`."""
    return {"ep.eplb": "true", "ep.eplb-config": config}


RELEASE_CASES = {
    "all2all deepep_high_throughput": {"ep.all2all-backend": "deepep_high_throughput"},
    "all2all deepep_v2": {"ep.all2all-backend": "deepep_v2"},
    "all2all allgather_reducescatter": {"ep.all2all-backend": "allgather_reducescatter"},
    "eplb with an unknown key": _eplb('{"window_size": 500, "redundant": 4}'),
    "redundant experts without eplb": {"ep.eplb-config": '{"num_redundant_experts": 4}'},
    "redundant experts with eplb": _eplb('{"num_redundant_experts": 4}'),
    "eplb policy not default": _eplb('{"policy": "x"}'),
    "eplb communicator unknown": _eplb('{"communicator": "bogus"}'),
    "eplb communicator nccl, async by default": _eplb('{"communicator": "torch_nccl"}'),
    "eplb communicator nccl, not async": _eplb('{"communicator": "torch_nccl", "use_async": false}'),
    "eplb communicator pynccl, async": _eplb('{"communicator": "pynccl", "use_async": true}'),
    "eplb communicator gloo": _eplb('{"communicator": "torch_gloo"}'),
    "eplb window of 0": _eplb('{"window_size": 0}'),
    "eplb policy a list": _eplb('{"policy": []}'),
    "eplb communicator an object, async": _eplb('{"use_async": true, "communicator": {}}'),
    "eplb window written 1000.0": _eplb('{"window_size": 1000.0}'),
    "eplb window written true": _eplb('{"window_size": true}'),
    "eplb window of 2.5": _eplb('{"window_size": 2.5}'),
    "eplb switch written 1": _eplb('{"log_balancedness": 1}'),
    "eplb interval of 0": _eplb('{"log_balancedness": true, "log_balancedness_interval": 0}'),
}


def _with_image(annotations: dict[str, str], image: str) -> dict[str, Any]:
    obj = isvc(command=SERVE, annotations=annotations)
    model(obj)["image"] = image
    return obj


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The literal env of a container, as the pod gets it (the last entry of a name wins)."""
    return {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}


def _backend_run(result: Any) -> Any:
    """The all2all backend the judged release runs: its ParallelConfig's (0.11.1+), else what its `vllm.envs`
    reads from VLLM_ALL2ALL_BACKEND (before 0.11.1 the communicators read only that)."""
    if "all2all_backend" in result.parallel:
        return result.parallel["all2all_backend"]
    return result.envs["VLLM_ALL2ALL_BACKEND"]


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("case", RELEASE_CASES)
def test_the_webhook_denies_exactly_what_the_release_in_the_image_would_refuse(
    vllm_judges: dict[str, Judge], release: str, case: str
) -> None:
    """Allowed: the release in the image starts the edited command. Denied: it names the release, and the
    edit the webhook would have written for the newest release is one this release refuses."""
    out, verdict = run(_with_image(RELEASE_CASES[case], f"vllm/vllm-openai:v{release}"))
    if verdict.allowed:
        result = _on(vllm_judges, release, serve_argv(model(out)["command"]), env=_env(model(out)))
        assert result.ok, f"admitted, but vLLM {release} refuses it: {result.error}"
        assert f"flags written for vLLM {release}, from the image tag" in verdict.warnings
        if "ep.all2all-backend" in RELEASE_CASES[case]:
            assert _backend_run(result) == RELEASE_CASES[case]["ep.all2all-backend"]
    else:
        assert f"vLLM {release} (from the image tag)" in verdict.message or "num_redundant_experts" in verdict.message
        naive, naive_verdict = run(_with_image(RELEASE_CASES[case], f"vllm/vllm-openai:v{NEWEST}"))
        if naive_verdict.allowed:
            refused = _on(vllm_judges, release, serve_argv(model(naive)["command"]))
            assert not refused.ok, f"denied, but vLLM {release} would have started it"


# -- world size and what the kubelet does to the values written ------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_prefill_context_parallelism_above_one_is_denied_and_one_starts(vllm_judges: dict[str, Judge], release: str) -> None:
    """vLLM's world size is TP x PP x PCP: DP = GPUs / TP would ask for twice the pod's GPUs with -pcp 2.
    Releases before -pcp existed refuse the flag outright; from 0.15 it parses."""
    if version(release) < (0, 15):
        assert "-pcp" not in vllm_judges[release].facts()["options"]
        assert _on(vllm_judges, release, [M, "-pcp", "1"]).stage == "parse"
        return
    denied = mutate(isvc(command=SERVE + ["-pcp", "2"]))
    assert not denied.allowed and "-pcp 2" in denied.message and "prefill context parallel size 1" in denied.message
    out, verdict = run(isvc(command=SERVE + ["-pcp", "1"]))
    assert verdict.allowed
    result = _on(vllm_judges, release, serve_argv(model(out)["command"]))
    assert result.ok and result.parallel["data_parallel_size"] == 8, result.error


@pytest.mark.parametrize("value", ["$(HOME)", "a $$ b", "$$(HOME)", "x$"])
def test_values_written_survive_the_kubelets_expansion(value: str) -> None:
    """The kubelet expands $(VAR) and turns $$ into $ in command and args: what vLLM gets is what was asked."""
    from tests.e2e.kubelet import container_argv, container_env

    config = {"window_size": 1000, "note": value}  # vLLM 0.15.1 ignores a key it does not know: any text passes
    out, verdict = run(isvc(command=SERVE, annotations={"ep.eplb": "true", "ep.eplb-config": json.dumps(config),
                                                       "ep.vllm-version": "0.15.1"}))
    assert verdict.allowed, verdict.message
    m = model(out)
    m["env"] = [{"name": "HOME", "value": "/root"}]
    assert json_after(container_argv(m, container_env(m, {})), "--eplb-config") == config


ENV_CASES = {
    "env only": ({}, "deepep_low_latency"),
    "env and the same annotation": ({"ep.all2all-backend": "deepep_low_latency"}, "deepep_low_latency"),
    "env against the annotation": ({"ep.all2all-backend": "deepep_high_throughput"}, "deepep_low_latency"),
    "annotation, no env": ({"ep.all2all-backend": "deepep_high_throughput"}, None),
}


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("case", ENV_CASES)
def test_the_backend_vllm_runs_is_the_one_asked_for_whatever_the_env_says(
    vllm_judges: dict[str, Judge], release: str, case: str
) -> None:
    """VLLM_ALL2ALL_BACKEND in the container: the only way before 0.11.1, read when the flag is absent
    (0.11.1-0.13), over the flag (0.14-0.15), ignored (0.16+). The webhook writes the flag, the env or both, so
    that what vLLM runs with the env and argv it writes is the annotation's backend, else the env's."""
    annotations, env_value = ENV_CASES[case]
    obj = _with_image(annotations, f"vllm/vllm-openai:v{release}")
    if env_value is not None:
        model(obj)["env"] = [{"name": "VLLM_ALL2ALL_BACKEND", "value": env_value}]
    wanted = annotations.get("ep.all2all-backend", env_value)
    out, verdict = run(obj)
    assert verdict.allowed, verdict.message
    result = _on(vllm_judges, release, serve_argv(model(out)["command"]), env=_env(model(out)))
    assert result.ok and _backend_run(result) == wanted, result.error or result.parallel
    naive = serve_argv(model(run(_with_image(annotations, f"vllm/vllm-openai:v{NEWEST}"))[0])["command"])
    before = _on(vllm_judges, release, naive, env=_env(model(obj)))
    if model(out).get("env") != model(obj).get("env"):  # the env was needed: without it the release runs another
        assert not before.ok or _backend_run(before) != wanted


@pytest.mark.parametrize("release", ["0.10.1.1", "0.15.1"])
def test_an_env_from_a_config_map_that_decides_the_backend_is_denied(vllm_judges: dict[str, Judge],
                                                                     release: str) -> None:
    """The webhook cannot read it: on these releases it decides the backend (the judge: whatever it holds runs)."""
    obj = _with_image({"ep.all2all-backend": "deepep_high_throughput"}, f"vllm/vllm-openai:v{release}")
    model(obj)["env"] = [{"name": "VLLM_ALL2ALL_BACKEND", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]
    verdict = mutate(obj)
    assert not verdict.allowed and "VLLM_ALL2ALL_BACKEND" in verdict.message and f"vLLM {release}" in verdict.message
    argv = [M, "-dp", "8", "--enable-expert-parallel",
            *(["--all2all-backend", "deepep_high_throughput"] if version(release) >= (0, 11, 1) else [])]
    assert _backend_run(_on(vllm_judges, release, argv, env={"VLLM_ALL2ALL_BACKEND": "naive"})) == "naive"


# -- abbreviations, as vLLM's parser reads them ---------------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("written", [["--tensor-parallel", "4"], ["--tensor_parallel=4"], ["-t", "4"],
                                     ["--enable-exp"], ["--pipeline-parallel", "1"]])
def test_an_abbreviated_owned_flag_is_read_and_replaced(vllm_judges: dict[str, Judge], release: str,
                                                         written: list[str]) -> None:
    before = _on(vllm_judges, release, [M, *written])
    if not before.ok:  # the abbreviation names nothing (or several options) on this release
        pytest.skip(f"vLLM {release} does not read {' '.join(written)} as one flag: {before.error[-80:]}")
    out, verdict = run(isvc(command=SERVE + written, annotations={"ep.tensor-parallel-size": "2"}))
    assert verdict.allowed, verdict.message
    result = _on(vllm_judges, release, serve_argv(model(out)["command"]))
    assert result.ok, result.error
    p = result.parallel
    assert (p["enable_expert_parallel"], p["tensor_parallel_size"], p["data_parallel_size"]) == (True, 2, 4)


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("prefix", ["--data-parallel-s", "--data-parallel"])
def test_an_ambiguous_prefix_is_denied_naming_the_options_it_could_be(
    vllm_judges: dict[str, Judge], release: str, prefix: str
) -> None:
    verdict = mutate(isvc(command=SERVE + [prefix, "4"]))
    assert not verdict.allowed and f"vLLM stops at {prefix}: an ambiguous option" in verdict.message
    assert "--data-parallel-size-local" in verdict.message
    assert _on(vllm_judges, release, [M, prefix, "4"]).stage == "parse"


@pytest.mark.parametrize("spelling", ["--enable-expert", "-e", "--enable_expert_parallel"])
def test_an_abbreviated_ep_flag_is_forbidden_in_a_forbid_namespace(vllm_judges: dict[str, Judge], spelling: str) -> None:
    from webhook.core.options import Options

    argv = [M, "-dp", "8", spelling]
    assert _on(vllm_judges, NEWEST, argv).parallel["enable_expert_parallel"] is True  # vLLM runs EP with it
    verdict = mutate(isvc(command=["vllm", "serve", *argv], enabled=None), Options(mode="forbid"))
    assert not verdict.allowed and spelling in verdict.message


def test_the_option_list_abbreviations_are_matched_against_is_the_newest_releases(vllm_judges: dict[str, Judge]) -> None:
    from webhook.vllm.options import OPTIONS, RELEASE

    assert ".".join(map(str, RELEASE)) == NEWEST
    assert list(OPTIONS) == vllm_judges[NEWEST].facts()["options"]


@pytest.mark.parametrize("release", RELEASES)
def test_a_double_dash_is_denied_because_vllm_refuses_it(vllm_judges: dict[str, Judge], release: str) -> None:
    assert _on(vllm_judges, release, [M, "-tp", "1", "--"]).stage == "parse"
    verdict = mutate(isvc(command=SERVE + ["--port", "8080", "--"]))
    assert not verdict.allowed and "remove the `--`" in verdict.message


@pytest.mark.parametrize("release", [r for r in RELEASES if version(r) >= (0, 10, 2)])
def test_dotted_eplb_keys_next_to_the_annotation_are_denied_since_they_would_replace_it(
    vllm_judges: dict[str, Judge], release: str
) -> None:
    written = ["--eplb-config.window_size", "100"]
    verdict = mutate(isvc(command=SERVE + written,
                          annotations={"ep.eplb": "true", "ep.eplb-config": '{"num_redundant_experts": 2}'}))
    assert not verdict.allowed and "move that key into ep.eplb-config" in verdict.message
    # what vLLM would have run without the denial: the annotation's key is gone
    naive = _on(vllm_judges, release, [M, "-dp", "8", "--enable-expert-parallel", "--enable-eplb",
                                       "--eplb-config", '{"num_redundant_experts": 2}', *written])
    assert naive.ok and naive.parallel["eplb_config"]["num_redundant_experts"] == 0


# -- generated commands, judged by the newest release ---------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(obj=list_isvcs())
def test_every_list_command_the_webhook_admits_starts_ep_over_the_pods_gpus(
    vllm_judges: dict[str, Judge], obj: dict[str, Any]
) -> None:
    out, verdict = run(obj)
    if not verdict.allowed:
        return
    m = model(out)
    words = [*(m.get("command") or []), *(m.get("args") or [])]
    if words[:2] == ["vllm", "serve"]:
        entry, argv = "serve", words[2:]
    elif "vllm.entrypoints.cli.main" in words:
        entry, argv = "serve", words[words.index("serve") + 1:]
    else:
        entry, argv = "api_server", words[words.index("vllm.entrypoints.openai.api_server") + 1:]
    gpus = int(next(iter(m["resources"]["limits"].values())))
    result = vllm_judges[NEWEST].judge(argv, gpus, entry=entry)
    assert result.ok, result.error
    tp = int(obj["metadata"]["annotations"].get("ep.tensor-parallel-size", "1"))
    p = result.parallel
    assert (p["enable_expert_parallel"], p["tensor_parallel_size"], p["data_parallel_size"]) == (True, tp, gpus // tp)


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("spelling", ["-ep", "-e"])
def test_a_short_ep_flag_is_spelled_out_for_releases_that_have_no_short_one(
    vllm_judges: dict[str, Judge], release: str, spelling: str
) -> None:
    out, verdict = run(_short_ep_object(spelling, release))
    assert verdict.allowed, verdict.message
    command = model(out)["command"]
    assert (spelling in command) == (version(release) >= (0, 14))
    result = _on(vllm_judges, release, serve_argv(command))
    assert result.ok and result.parallel["enable_expert_parallel"] is True, result.error


def _short_ep_object(spelling: str, release: str) -> dict[str, Any]:
    obj = isvc(command=SERVE + [spelling, "-tp", "1"])
    model(obj)["image"] = f"vllm/vllm-openai:v{release}"
    return obj


# -- prefixes, release by release ------------------------------------------------------------------------

OWNED_SPELLINGS = sorted({*flags.SHORT_ALIASES, *flags.LONG_ALIASES, flags.ENABLE_EP, flags.DISABLE_EP, flags.TP,
                          flags.DP, flags.PP, flags.PCP, flags.DP_LOCAL, flags.ALL2ALL, flags.ENABLE_EPLB,
                          flags.DISABLE_EPLB, flags.EPLB_CONFIG, flags.ENABLE_DBO, flags.DISABLE_DBO,
                          *flags.MULTI_NODE_FLAGS})


def _resolve(options: set[str], spelling: str) -> str | None:
    """What argparse matches `spelling` to among `options`: the whole option, else the one it is a prefix of;
    None when it is a prefix of none or of several (vLLM then stops: "unrecognized" or "ambiguous")."""
    if spelling in options:
        return spelling
    found = [o for o in options if o.startswith(spelling)]
    return found[0] if len(found) == 1 else None


@pytest.mark.parametrize("release", RELEASES)
def test_every_prefix_of_an_owned_flag_means_to_the_webhook_what_it_means_to_the_release(
    vllm_judges: dict[str, Judge], release: str
) -> None:
    """The webhook resolves prefixes against 0.33.0's options (and the `--no-x` negations older releases have):
    wherever a release reads a prefix of a flag the webhook owns as one option, the webhook reads the same
    option, or denies the prefix as ambiguous (naming the whole flags to write)."""
    options = set(vllm_judges[release].facts()["options"])
    for owned in OWNED_SPELLINGS:
        for n in range(2, len(owned) + 1):
            prefix = owned[:n]
            if prefix == "--":
                continue
            read = _resolve(options, prefix)
            if read is None:
                continue
            webhook = flags.canonical(prefix)
            assert webhook.startswith(flags.AMBIGUOUS) or webhook == flags.canonical(read), (prefix, read, webhook)


def test_the_older_negations_are_the_no_options_older_releases_have_and_0_33_lacks(
    vllm_judges: dict[str, Judge]
) -> None:
    from webhook.vllm.options import OLDER_NEGATIONS, OPTIONS

    older = {o for r in RELEASES if r != NEWEST for o in vllm_judges[r].facts()["options"] if o.startswith("--no-")}
    assert sorted(older - set(OPTIONS)) == list(OLDER_NEGATIONS)


@pytest.mark.parametrize("release", ["0.24.0"])  # KServe v0.20's; its presets pass flags older releases lack
def test_an_abbreviated_negation_after_the_multi_node_presets_ep_flag_is_removed(
    vllm_judges: dict[str, Judge], release: str, tmp_path: Path
) -> None:
    """KServe's multi-node preset renders --enable-expert-parallel before the object's args: a
    `--no-enable-expert` there is, on these releases, `--no-enable-expert-parallel` and would switch EP off."""
    from tests.kserve.test_llminferenceservice import llmisvc, multi_node
    from tests.kserve_presets import container_argv, run as run_preset

    obj = multi_node(llmisvc(args=["--no-enable-expert"], annotations={"ep.nodes": "2", "ep.vllm-version": release}))
    verdict = mutate(copy.deepcopy(obj))
    assert verdict.allowed, verdict.message
    out = apply(obj, verdict)
    argv = run_preset(container_argv(out, "decode"), tmp_path)
    result = _on(vllm_judges, release, serve_argv(argv))
    assert result.ok and result.parallel["enable_expert_parallel"] is True, result.error or result.parallel
    assert "--no-enable-expert" not in out["spec"]["template"]["containers"][0].get("args", [])


# -- the model named twice: in a `vllm serve` command and by the runtime's --model ---------------------------


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize(("command", "args"), [
    (["vllm", "serve", M, "--max-model-len", "4096"], None),
    (["vllm", "serve", "", "--max-model-len", "4096"], None),
    (["vllm", "serve"], [M, "--max-model-len", "4096"]),
    (["vllm", "serve", "--max-model-len", "4096"], None),
    (["vllm", "serve"], ["--max-model-len", "4096"]),
], ids=["model in the command", "empty model in the command", "model in the args", "model from the runtime only",
        "flags in the args"])
def test_a_model_in_the_command_beside_the_runtimes_model_flag_is_denied_exactly_where_vllm_refuses_it(
    vllm_judges: dict[str, Judge], release: str, command: list[str], args: list[str] | None
) -> None:
    """KServe's kserve-vllmserver passes --model=/mnt/models after the object's command: the pod KServe builds
    (its runtime's args merged in, as `kserve_container` does) starts on the release in the image exactly when
    the webhook admits the object, and a denial says to remove the model from the command."""
    obj = isvc(command=command, args=args)
    model(obj)["modelFormat"] = {"name": "vLLM"}
    model(obj)["image"] = f"vllm/vllm-openai:v{release}"
    runtime = next(d for d in shipped_runtime_docs() if d["metadata"]["name"] == "kserve-vllmserver")
    verdict = mutate(copy.deepcopy(obj), runtimes=shipped_runtimes())
    mutated = apply(obj, verdict) if verdict.allowed else obj
    argv, env = kserve_container(mutated, runtime)
    started = _on(vllm_judges, release, serve_argv(argv), env={k: v for k, v in env.items() if k.startswith("VLLM_")})
    if verdict.allowed:
        assert started.ok, f"admitted, but vLLM {release} refuses it: {started.error}"
    else:
        assert not started.ok and "unrecognized arguments" in started.error
        assert f"vLLM {release} (from the image tag)" in verdict.message and "remove the model from" in verdict.message
