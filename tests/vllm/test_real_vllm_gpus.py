"""Real vLLM releases judge commands written for GPUs that come from DRA claims (ResourceClaimTemplates)."""

from __future__ import annotations

import pytest

from tests.core.test_gpu_sources import FOUR, decide, dra_isvc, exactly, template
from tests.helpers import model
from tests.vllm_releases import RELEASES, Judge, serve_argv

CASES = {
    "four from one request": (FOUR, 4),
    "gpus and nics": (template("four-gpus", exactly("g", "gpu.nvidia.com", 6), exactly("n", "rdma.example.com", 2)), 6),
    "v1beta1 flat": (template("four-gpus", {"name": "g", "deviceClassName": "gpu.amd.com", "count": 2},
                              version="v1beta1"), 2),
}


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("case", CASES)
def test_a_dra_pod_starts_ep_over_exactly_the_gpus_its_claims_give(
    vllm_judges: dict[str, Judge], release: str, case: str
) -> None:
    claim_template, gpus = CASES[case]
    out, verdict = decide(dra_isvc(), claim_template)
    assert verdict.allowed, verdict.message
    result = vllm_judges[release].judge(serve_argv(model(out)["command"]), gpus)
    assert result.ok, result.error
    p = result.parallel
    assert (p["enable_expert_parallel"], p["tensor_parallel_size"] * p["data_parallel_size"]) == (True, gpus)
