"""Offline: GPUs claimed through DRA are counted from ResourceClaimTemplates in the stream or in --resources."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli.test_cli import cli
from tests.cli.test_cli_streams import stream
from tests.core.test_gpu_sources import FOUR, dra_isvc, template, exactly
from tests.vllm_grammar import parse_launch


def _dp(stdout: str) -> int:
    for doc in yaml.safe_load_all(stdout):
        if doc and doc.get("kind") == "InferenceService":
            return int(parse_launch(doc["spec"]["predictor"]["model"]["command"]).data_parallel_size)
    raise AssertionError("no InferenceService in the output")


def test_a_template_in_the_stream_decides_the_data_parallel_size_and_passes_through() -> None:
    done = cli("mutate", "-f", "-", stdin=stream(FOUR, dra_isvc()))
    assert done.returncode == 0, done.stderr
    assert _dp(done.stdout) == 4
    assert "ResourceClaimTemplate" in done.stdout  # other documents pass through


def test_a_template_from_resources_counts_and_one_in_another_namespace_does_not(tmp_path: Path) -> None:
    resources = tmp_path / "templates.yaml"
    resources.write_text(stream(FOUR))
    done = cli("mutate", "-f", "-", "--resources", str(resources), stdin=stream(dra_isvc()))
    assert done.returncode == 0, done.stderr
    assert _dp(done.stdout) == 4
    elsewhere = template("four-gpus", exactly("gpus", "gpu.nvidia.com", 4))
    elsewhere["metadata"]["namespace"] = "other"
    resources.write_text(stream(elsewhere))
    done = cli("mutate", "-f", "-", "--resources", str(resources), stdin=stream(dra_isvc()))
    assert done.returncode == 1 and "'four-gpus'" in done.stderr and "--resources" in done.stderr
    assert done.stdout == ""


def test_resources_without_anything_the_webhook_reads_is_a_usage_error(tmp_path: Path) -> None:
    resources = tmp_path / "cm.yaml"
    resources.write_text(stream({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}))
    done = cli("mutate", "-f", "-", "--resources", str(resources), stdin=stream(dra_isvc()))
    assert done.returncode == 2 and "no ResourceClaimTemplate" in done.stderr
