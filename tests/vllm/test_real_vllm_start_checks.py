"""Start-up checks vLLM makes beyond its parser: VLLM_DP_SIZE where the flags give DP 1, dual-batch overlap
without a backend that supports it, CUDA-only backends on AMD GPUs. Real releases judge the facts; the webhook
denies what they would refuse."""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.test_engine_rules import SERVE
from tests.helpers import isvc, model, run
from tests.vllm_releases import RELEASES, Judge, serve_argv, version
from webhook.admission.kinds import mutate
from webhook.vllm import releases

M = "/mnt/models"


def with_env(obj: dict[str, Any], **env: str) -> dict[str, Any]:
    model(obj)["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return obj


# -- VLLM_DP_SIZE ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_vllm_reads_vllm_dp_size_whenever_the_flags_give_dp_1(vllm_judges: dict[str, Judge], release: str) -> None:
    one = vllm_judges[release].judge([M, "-tp", "8", "--enable-expert-parallel"], 8, {"VLLM_DP_SIZE": "2"})
    two = vllm_judges[release].judge([M, "-tp", "4", "-dp", "2", "--enable-expert-parallel"], 8, {"VLLM_DP_SIZE": "4"})
    assert one.ok and one.parallel["data_parallel_size"] == 2, one.error  # 16 GPUs asked of 8
    assert two.ok and two.parallel["data_parallel_size"] == 2, two.error  # the flag wins


def test_vllm_dp_size_in_the_env_is_denied_where_the_webhook_writes_dp_1() -> None:
    verdict = mutate(with_env(isvc(command=SERVE, annotations={"ep.tensor-parallel-size": "8"}), VLLM_DP_SIZE="2"))
    assert not verdict.allowed and "VLLM_DP_SIZE=2" in verdict.message and "remove VLLM_DP_SIZE" in verdict.message
    # with DP > 1 the flag wins, and VLLM_DP_SIZE=1 says nothing
    assert mutate(with_env(isvc(command=SERVE), VLLM_DP_SIZE="2")).allowed
    assert mutate(with_env(isvc(command=SERVE, annotations={"ep.tensor-parallel-size": "8"}), VLLM_DP_SIZE="1")).allowed


# -- dual-batch overlap ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_the_release_table_knows_the_backends_dual_batch_overlap_starts_with(
    vllm_judges: dict[str, Judge], release: str
) -> None:
    found = vllm_judges[release].facts()["dbo_backends"]
    profile = releases.profile(tuple(int(p) for p in release.split(".")))
    assert profile is not None
    if found is None:
        assert profile.dbo_backends == frozenset() and "--enable-dbo" not in vllm_judges[release].facts()["options"]
    else:
        cuda = min(found, key=len)  # 0.33 also lists ROCm's, which adds allgather_reducescatter
        assert profile.dbo_backends == frozenset(cuda)


@pytest.mark.parametrize(
    ("args", "annotations", "allowed"),
    [
        (["--enable-dbo"], {}, False),
        (["--enable_dbo", "--all2all-backend", "allgather_reducescatter"], {}, False),
        (["--enable-db"], {"ep.all2all-backend": "deepep_low_latency"}, True),
        (["--enable-dbo", "--all2all-backend", "deepep_high_throughput"], {}, True),
        (["--enable-dbo", "--no-enable-dbo"], {}, True),
        (["--enable-dbo"], {"ep.all2all-backend": "nixl_ep", "ep.vllm-version": "0.18.0"}, False),
        (["--enable-dbo"], {"ep.all2all-backend": "nixl_ep", "ep.vllm-version": "0.24.0"}, True),
    ],
)
def test_dual_batch_overlap_without_a_backend_it_supports_is_denied(
    args: list[str], annotations: dict[str, str], allowed: bool
) -> None:
    out, verdict = run(isvc(command=SERVE, args=args, annotations=annotations))
    assert verdict.allowed is allowed, verdict.message
    if not allowed:
        assert "--enable-dbo" in verdict.message and "ep.all2all-backend" in verdict.message


# -- CUDA-only backends on AMD --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["deepep_low_latency", "pplx", "flashinfer_all2allv"])
def test_cuda_only_backends_on_amd_gpus_are_denied(backend: str) -> None:
    obj = isvc(command=SERVE, limits={"amd.com/gpu": "8"}, annotations={"ep.all2all-backend": backend})
    verdict = mutate(obj)
    assert not verdict.allowed and "AMD" in verdict.message and "allgather_reducescatter" in verdict.message
    obj["metadata"]["annotations"]["ep.all2all-backend"] = "allgather_reducescatter"
    assert mutate(obj).allowed


@pytest.mark.parametrize("release", [r for r in RELEASES if version(r) >= (0, 11, 1)])
def test_what_the_webhook_writes_for_amd_starts(vllm_judges: dict[str, Judge], release: str) -> None:
    obj = isvc(command=SERVE, limits={"amd.com/gpu": "8"},
               annotations={"ep.all2all-backend": "allgather_reducescatter", "ep.vllm-version": release})
    out, verdict = run(obj)
    assert verdict.allowed, verdict.message
    result = vllm_judges[release].judge(serve_argv(model(out)["command"]), 8)
    assert result.ok and result.parallel["all2all_backend"] == "allgather_reducescatter", result.error
