"""Offline: an LLMInferenceServiceConfig in the stream is read like the namespace's own presets."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_cli import cli
from tests.cli.test_cli_streams import stream
from tests.kserve.test_llminferenceservice import llmisvc
from tests.vllm.test_real_vllm_policy import preset

FORBID = "defaults:\n  mode: forbid\n"


def test_a_preset_in_the_stream_is_read_by_forbid(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(FORBID)
    obj = llmisvc(enabled=None)
    obj["spec"]["baseRefs"] = [{"name": "team-defaults"}]
    ep = preset("team-defaults", ["--enable-expert-parallel"])
    done = cli("mutate", "-f", "-", "--policy", str(policy), stdin=stream(ep, obj))
    assert done.returncode == 1 and "LLMInferenceServiceConfig team-defaults" in done.stderr, done.stderr
    plain = preset("team-defaults", ["--max-model-len=4096"])
    done = cli("mutate", "-f", "-", "--policy", str(policy), stdin=stream(plain, obj))
    assert done.returncode == 0, done.stderr
