"""KServe's own runtimes decide what the webhook writes.

Built on the ClusterServingRuntimes KServe ships (read from ../shared, see its
README): each case merges the runtime with the mutated InferenceService the way
KServe's controller does, runs the result with bash and stand-ins that record
the server's argv, and parses that argv as vLLM (or huggingfaceserver) would.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import apply, isvc, kserve_container, model, shipped_runtime_docs, shipped_runtimes
from tests.vllm_grammar import ALL2ALL, GrammarError, parse_launch
from webhook.kserve import selection
from webhook.admission.kinds import mutate
from webhook.vllm.flags import ALL2ALL_BACKENDS
from webhook.kserve.servingruntime import ModelFormat, RuntimeSpec, spec_from_object
from webhook.kserve.selection import Runtimes
from webhook.core.options import Options

FAKE = """#!/bin/bash
{ printf '%s\\0' "$(basename "$0")"; printf '%s\\0' "$@"; } > "$ARGV_OUT"
"""


@pytest.fixture()
def fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("vllm", "python3", "python"):
        p = bin_dir / name
        p.write_text(FAKE)
        p.chmod(0o755)
    return bin_dir


def shipped(name: str) -> dict[str, Any]:
    return next(d for d in shipped_runtime_docs() if d["metadata"]["name"] == name)


def hf_isvc(**kw: Any) -> dict[str, Any]:
    obj = isvc(**kw)
    model(obj)["modelFormat"] = {"name": "huggingface"}
    return obj


def run_pod(obj: dict[str, Any], runtime: str, fake_bin: Path, tmp_path: Path, gpus: int = 8) -> Any:
    """What the server parses when KServe starts the predictor with `runtime`."""
    argv, env = kserve_container(obj, shipped(runtime))
    out = tmp_path / "argv"
    env.update({"PATH": f"{fake_bin}:/usr/bin:/bin", "ARGV_OUT": str(out), "HOME": str(tmp_path)})
    subprocess.run(argv, env=env, cwd=tmp_path, check=True, timeout=20, capture_output=True)
    recorded = out.read_bytes().decode().split("\0")[:-1]
    ns = parse_launch(recorded)
    if getattr(ns, "server", "vllm") == "huggingfaceserver" and ns.backend != "huggingface":
        ns.tensor_parallel_size = gpus  # vllm_model.py: tensor_parallel_size = torch.cuda.device_count()
    return ns


# -- 1. huggingfaceserver ------------------------------------------------------------------------------


def test_an_auto_selected_huggingfaceserver_runs_ep_over_its_forced_tp_on_exactly_the_pods_gpus(
    fake_bin: Path, tmp_path: Path
) -> None:
    obj = hf_isvc()
    verdict = mutate(copy.deepcopy(obj), runtimes=shipped_runtimes())
    ns = run_pod(apply(obj, verdict), "kserve-huggingfaceserver", fake_bin, tmp_path)
    assert ns.enable_expert_parallel is True
    assert (ns.tensor_parallel_size, ns.data_parallel_size) == (8, 1)
    assert ns.model_name == "qwen3"
    assert any("GPU count (8)" in w for w in verdict.warnings)
    # before: --tensor-parallel-size 1 --data-parallel-size 8 became TP 8 x DP 8 = 64 GPUs on an 8-GPU pod
    assert ns.tensor_parallel_size * ns.data_parallel_size == 8


def test_without_the_webhook_rule_the_same_pod_would_ask_vllm_for_64_gpus(fake_bin: Path, tmp_path: Path) -> None:
    obj = hf_isvc(args=["--tensor-parallel-size", "1", "--data-parallel-size", "8", "--enable-expert-parallel"])
    ns = run_pod(obj, "kserve-huggingfaceserver", fake_bin, tmp_path)
    assert ns.tensor_parallel_size * ns.data_parallel_size == 64  # what the old output made vLLM attempt
    fixed = apply(obj, mutate(copy.deepcopy(obj), runtimes=shipped_runtimes()))
    ns = run_pod(fixed, "kserve-huggingfaceserver", fake_bin, tmp_path)
    assert (ns.tensor_parallel_size, ns.data_parallel_size, ns.enable_expert_parallel) == (8, 1, True)


def test_a_named_huggingfaceserver_runtime_is_recognised_without_the_assuming_vllm_warning(
    fake_bin: Path, tmp_path: Path
) -> None:
    obj = hf_isvc()
    model(obj)["runtime"] = "kserve-huggingfaceserver"
    verdict = mutate(copy.deepcopy(obj), runtimes=shipped_runtimes())
    assert not any("assuming" in w for w in verdict.warnings)
    ns = run_pod(apply(obj, verdict), "kserve-huggingfaceserver", fake_bin, tmp_path)
    assert (ns.tensor_parallel_size, ns.data_parallel_size, ns.enable_expert_parallel) == (8, 1, True)


def test_an_explicit_huggingfaceserver_command_is_edited_not_denied(fake_bin: Path, tmp_path: Path) -> None:
    obj = hf_isvc(command=["python", "-m", "huggingfaceserver"], args=["--model_name=qwen3", "-dp", "4"])
    verdict = mutate(copy.deepcopy(obj))  # no runtimes needed: the command says what runs
    assert verdict.allowed, verdict.message
    ns = run_pod(apply(obj, verdict), "kserve-huggingfaceserver", fake_bin, tmp_path, gpus=4)
    assert (ns.tensor_parallel_size, ns.data_parallel_size, ns.enable_expert_parallel) == (4, 1, True)
    assert any("removed -dp 4" in w for w in verdict.warnings)


@pytest.mark.parametrize(("tp", "allowed"), [("2", False), ("8", True)])
def test_a_tensor_parallel_annotation_on_huggingfaceserver_must_equal_the_gpu_count(tp: str, allowed: bool) -> None:
    verdict = mutate(hf_isvc(annotations={"ep.tensor-parallel-size": tp}), runtimes=shipped_runtimes())
    assert verdict.allowed is allowed
    if not allowed:
        assert "GPU count (8)" in verdict.message and "kserve-vllmserver" in verdict.message


@pytest.mark.parametrize("backend", [["--backend=huggingface"], ["--backend", "huggingface"]])
def test_the_huggingface_backend_is_denied_saying_to_use_vllm(backend: list[str]) -> None:
    verdict = mutate(hf_isvc(args=backend), runtimes=shipped_runtimes())
    assert not verdict.allowed
    assert "--backend=huggingface" in verdict.message and "--backend=vllm" in verdict.message


def test_the_vllm_backend_named_explicitly_is_fine(fake_bin: Path, tmp_path: Path) -> None:
    obj = hf_isvc(args=["--backend=vllm"])
    ns = run_pod(apply(obj, mutate(copy.deepcopy(obj), runtimes=shipped_runtimes())), "kserve-huggingfaceserver",
                 fake_bin, tmp_path)
    assert ns.backend == "vllm" and ns.enable_expert_parallel


# -- the vLLM runtime, auto-selected ---------------------------------------------------------------


def test_an_auto_selected_vllm_runtime_gets_tp_and_dp_after_the_runtimes_own_args(fake_bin: Path, tmp_path: Path) -> None:
    obj = isvc(args=["--max-model-len=8192"])
    model(obj)["modelFormat"] = {"name": "vLLM"}
    verdict = mutate(copy.deepcopy(obj), runtimes=shipped_runtimes())
    assert not verdict.warnings or not any("could not check" in w for w in verdict.warnings)
    ns = run_pod(apply(obj, verdict), "kserve-vllmserver", fake_bin, tmp_path)
    assert (ns.tensor_parallel_size, ns.data_parallel_size, ns.enable_expert_parallel) == (1, 8, True)
    assert ns.model == "/mnt/models" and ns.served_model_name == ["qwen3"] and ns.max_model_len == 8192


def test_an_unknown_model_format_keeps_todays_behaviour_with_a_warning() -> None:
    obj = isvc(args=[])
    model(obj)["modelFormat"] = {"name": "onnx"}
    verdict = mutate(obj, runtimes=shipped_runtimes())
    assert verdict.allowed and verdict.patch
    assert any("no known runtime auto-selects modelFormat 'onnx'" in w for w in verdict.warnings)


# -- 2. workerSpec ----------------------------------------------------------------------------------


def multinode(**kw: Any) -> dict[str, Any]:
    obj = hf_isvc(**kw)
    obj["spec"]["predictor"]["workerSpec"] = {"pipelineParallelSize": 2, "tensorParallelSize": 8}
    return obj


def test_a_multi_node_service_is_denied_naming_workerspec_and_what_works_instead() -> None:
    verdict = mutate(multinode(), runtimes=shipped_runtimes())
    assert not verdict.allowed
    assert "spec.predictor.workerSpec" in verdict.message and "LLMInferenceService" in verdict.message


def test_an_enforced_multi_node_service_passes_untouched_with_a_warning() -> None:
    obj = multinode(enabled=None)
    verdict = mutate(obj, Options(mode="enforce"), runtimes=shipped_runtimes())
    assert verdict.allowed and not verdict.patch
    assert any("workerSpec" in w for w in verdict.warnings)


def test_multi_node_selection_picks_the_multinode_runtime_and_single_node_never_does() -> None:
    runtimes = shipped_runtimes()
    single = selection.resolve(hf_isvc(), runtimes).runtime
    multi = selection.resolve(multinode(), runtimes).runtime
    assert single is not None and single.name == "kserve-huggingfaceserver"  # priority 1, single node
    assert multi is not None and multi.name == "kserve-huggingfaceserver-multinode"  # priority 2, workerSpec


# -- auto-selection order ----------------------------------------------------------------------------


def rt(
    name: str,
    *,
    kind: str = "ClusterServingRuntime",
    fmt: str = "vLLM",
    version: str | None = None,
    auto: bool = True,
    priority: int | None = None,
    protocols: tuple[str, ...] = (),
    created: str = "2026-01-01T00:00:00Z",
    **kw: Any,
) -> RuntimeSpec:
    return RuntimeSpec(kind, name, "vllm/vllm-openai", ("vllm", "serve"), None,
                       formats=(ModelFormat(fmt, version, auto, priority),), protocol_versions=protocols,
                       created=created, **kw)


def pick(runtimes: Runtimes, fmt: str = "vLLM", version: str | None = None, protocol: str | None = None) -> str | None:
    found = selection.auto_select(selection.Model(None, fmt, version, protocol, False), runtimes)
    return found.name if found else None


def ns_rt(name: str, **kw: Any) -> RuntimeSpec:
    return rt(name, kind="ServingRuntime", **kw)


@pytest.mark.parametrize(
    ("runtimes", "kwargs", "expected"),
    [
        pytest.param(Runtimes((ns_rt("mine", priority=1),), (rt("cluster", priority=9),)), {}, "mine",
                     id="a namespaced runtime beats any cluster runtime"),
        pytest.param(Runtimes((), (rt("low", priority=1), rt("high", priority=5))), {}, "high",
                     id="the highest priority wins"),
        pytest.param(Runtimes((), (rt("none"), rt("some", priority=0))), {}, "some",
                     id="a runtime with a priority beats one without"),
        pytest.param(Runtimes((), (rt("off", priority=9, disabled=True), rt("on", priority=1))), {}, "on",
                     id="disabled runtimes are skipped"),
        pytest.param(Runtimes((), (rt("manual", auto=False, priority=9), rt("auto", priority=1))), {}, "auto",
                     id="formats without autoSelect are skipped"),
        pytest.param(Runtimes((), (rt("mm", priority=9, multi_model=True), rt("sm"))), {}, "sm",
                     id="multi-model runtimes are skipped"),
        pytest.param(Runtimes((), (rt("v1", version="1", priority=1), rt("v2", version="2", priority=9))),
                     {"version": "1"}, "v1", id="a version in the object must match"),
        pytest.param(Runtimes((), (rt("grpc", protocols=("grpc-v2",), priority=9), rt("rest", protocols=("v1",)))),
                     {}, "rest", id="protocol v1 is assumed when the object gives none"),
        pytest.param(Runtimes((), (rt("v1only", protocols=("v1",), priority=9), rt("v2", protocols=("v2",)))),
                     {"protocol": "v2"}, "v2", id="the object's protocolVersion must be supported"),
        pytest.param(Runtimes((), (rt("old", priority=1, created="2025-01-01T00:00:00Z"),
                                   rt("new", priority=1, created="2026-06-01T00:00:00Z"))), {}, "new",
                     id="equal priorities: the newest runtime first"),
        pytest.param(Runtimes((), (rt("b", priority=1), rt("a", priority=1))), {}, "a",
                     id="equal priority and age: by name"),
        pytest.param(Runtimes((), (rt("v2first", priority=1, protocols=("v2",)),
                                   rt("v1first", priority=1, protocols=("v2", "v1")))), {"protocol": "v2"}, "v1first",
                     id="equal priority: the runtime with the lower protocol version first"),
        pytest.param(Runtimes((), (rt("other", fmt="onnx", priority=9),)), {}, None,
                     id="no runtime for the format"),
    ],
)
def test_auto_selection_follows_kserves_order(runtimes: Runtimes, kwargs: dict[str, Any], expected: str | None) -> None:
    assert pick(runtimes, **kwargs) == expected


def test_auto_selection_decides_what_the_webhook_writes() -> None:
    dropping = dataclasses.replace(ns_rt("drops-args", priority=1), command=("bash", "-c", "exec vllm serve m"))
    forwarding = rt("forwards", priority=9)
    obj = isvc(args=[])
    model(obj)["modelFormat"] = {"name": "vLLM"}
    assert not mutate(copy.deepcopy(obj), runtimes=Runtimes((dropping,), (forwarding,))).allowed  # namespaced wins
    assert mutate(copy.deepcopy(obj), runtimes=Runtimes((), (forwarding,))).allowed


def test_a_named_runtime_is_looked_up_in_the_namespace_before_the_cluster() -> None:
    namespaced = dataclasses.replace(ns_rt("shared-name"), command=("sh", "-c", "echo hi"))
    cluster = rt("shared-name")
    obj = isvc(args=[])
    model(obj)["runtime"] = "shared-name"
    assert not mutate(copy.deepcopy(obj), runtimes=Runtimes((namespaced,), (cluster,))).allowed
    assert mutate(copy.deepcopy(obj), runtimes=Runtimes((), (cluster,))).allowed


# -- 3. all2all backends -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ALL2ALL_BACKENDS)
def test_every_backend_vllm_accepts_reaches_vllm(backend: str, fake_bin: Path, tmp_path: Path) -> None:
    obj = isvc(command=["vllm", "serve", "/mnt/models"], annotations={"ep.all2all-backend": backend})
    verdict = mutate(copy.deepcopy(obj))
    m = model(apply(obj, verdict))
    assert parse_launch(m["command"] + (m.get("args") or [])).all2all_backend == backend


def test_the_backend_list_is_exactly_vllms() -> None:
    assert sorted(ALL2ALL_BACKENDS) == sorted(ALL2ALL)


@pytest.mark.parametrize("backend", ["mori", "nccl", "deepep"])
def test_backends_vllm_refuses_are_denied(backend: str) -> None:
    verdict = mutate(isvc(command=["vllm", "serve", "m"], annotations={"ep.all2all-backend": backend}))
    assert not verdict.allowed and "deepep_v2" in verdict.message
    with pytest.raises(GrammarError):
        parse_launch(["vllm", "serve", "m", "--all2all-backend", backend])


@pytest.mark.parametrize("backend", ["naive", "pplx"])
def test_backends_vllm_only_tolerates_warn_that_it_falls_back(backend: str) -> None:
    verdict = mutate(isvc(command=["vllm", "serve", "m"], annotations={"ep.all2all-backend": backend}))
    assert verdict.allowed and any("falls back" in w for w in verdict.warnings)


def test_a_policy_narrows_the_backends() -> None:
    options = Options(all2all_backends=("deepep_low_latency",))
    denied = mutate(isvc(command=["vllm", "serve", "m"], annotations={"ep.all2all-backend": "nixl_ep"}), options)
    assert not denied.allowed and "deepep_low_latency" in denied.message and "nixl_ep" not in denied.message.split(";")[1]


# -- a command on the InferenceService: the runtime's args still come first ----------------------


def runtime_doc(args: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
        "metadata": {"name": "team-vllm", "namespace": "llm"},
        "spec": {"supportedModelFormats": [{"name": "vLLM", "autoSelect": True}],
                 "containers": [{"name": "kserve-container", "image": "vllm/vllm-openai:v0.33.0",
                                 "command": ["vllm", "serve", "/mnt/models"], "args": args}]},
    }


def parsed(obj: dict[str, Any], doc: dict[str, Any], fake_bin: Path, tmp_path: Path) -> Any:
    argv, env = kserve_container(obj, doc)
    out = tmp_path / "argv"
    env.update({"PATH": f"{fake_bin}:/usr/bin:/bin", "ARGV_OUT": str(out), "HOME": str(tmp_path)})
    subprocess.run(argv, env=env, cwd=tmp_path, check=True, timeout=20, capture_output=True)
    return parse_launch(out.read_bytes().decode().split("\0")[:-1])


def test_flags_in_the_runtimes_args_cannot_override_the_webhooks_when_the_object_has_a_command(
    fake_bin: Path, tmp_path: Path
) -> None:
    doc = runtime_doc(["--port=8080", "--tensor-parallel-size=4", "--data-parallel-size=2"])
    obj = isvc(command=["vllm", "serve", "/mnt/models", "-tp", "8"])
    model(obj)["runtime"] = "team-vllm"
    spec = spec_from_object("ServingRuntime", doc)
    assert spec is not None
    before = parsed(obj, doc, fake_bin, tmp_path)
    assert before.tensor_parallel_size == 4  # KServe: command, then the runtime's args, then the object's
    verdict = mutate(copy.deepcopy(obj), runtimes=Runtimes((spec,)))
    out = apply(obj, verdict)
    assert model(out)["command"] == ["vllm", "serve", "/mnt/models"]  # moved after the runtime's args
    ns = parsed(out, doc, fake_bin, tmp_path)
    assert (ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size, ns.port) == (True, 1, 8, 8080)


def test_runtime_args_that_set_none_of_the_flags_leave_the_edit_in_the_command(fake_bin: Path, tmp_path: Path) -> None:
    # no positional model: the runtime's args give --model=/mnt/models, which vLLM 0.11.2+ refuses beside one
    obj = isvc(command=["vllm", "serve", "-tp", "8"])
    model(obj)["modelFormat"] = {"name": "vLLM"}
    out = apply(obj, mutate(copy.deepcopy(obj), runtimes=shipped_runtimes()))  # kserve-vllmserver, auto-selected
    assert "args" not in model(out) and "--data-parallel-size" in model(out)["command"]
    ns = parsed(out, shipped("kserve-vllmserver"), fake_bin, tmp_path)
    assert (ns.tensor_parallel_size, ns.data_parallel_size, ns.served_model_name) == (1, 8, ["qwen3"])
