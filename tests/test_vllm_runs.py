"""The cross-check of tests/vllm_runs.py fails a parse that the real release reads otherwise."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

import pytest

from tests import vllm_grammar
from tests.vllm_grammar import GrammarError, Launch, parse_huggingfaceserver, parse_launch
from tests.vllm_runs import (
    CROSS_CHECK, GRAMMAR_ONLY, HUGGINGFACESERVER_RELEASE, Disagreement, huggingfaceserver_vllm_argv,
)

pytestmark = pytest.mark.skipif(GRAMMAR_ONLY, reason="EP_WEBHOOK_GRAMMAR_ONLY: the cross-check is off")
EP = ["vllm", "serve", "/mnt/models", "-dp", "8", "--enable-expert-parallel"]


@pytest.fixture
def checked() -> Iterator[None]:
    """The session's cross-check, on (tests/conftest.py)."""
    assert CROSS_CHECK in vllm_grammar.CHECKS
    yield


def test_a_launch_both_read_alike_passes(checked: None) -> None:
    ns = parse_launch([*EP, "--enable-eplb", "--eplb-config", json.dumps({"window_size": 500})])
    assert (ns.data_parallel_size, ns.enable_eplb, ns.eplb_config) == (8, True, {"window_size": 500})


def test_what_the_grammar_accepts_and_the_newest_release_refuses_fails(checked: None) -> None:
    """0.33.0's ParallelConfig refuses EPLB without expert parallelism; the grammar parses it."""
    argv = ["vllm", "serve", "/mnt/models", "-dp", "8", "--enable-eplb"]
    with pytest.raises(Disagreement, match=r"vLLM 0\.33\.0 .* refuses at its config stage .*"):
        parse_launch(argv)


def test_what_the_release_named_refuses_fails_though_the_newest_accepts(checked: None) -> None:
    """`-ep` exists from 0.14: the newest reads it, 0.11.2 stops at its parser."""
    argv = ["vllm", "serve", "/mnt/models", "-dp", "8", "-ep"]
    assert parse_launch(argv).enable_expert_parallel is True
    with pytest.raises(Disagreement, match=r"vLLM 0\.11\.2 .* refuses at its parse stage"):
        parse_launch(argv, release="0.11.2")


def test_what_the_grammar_refuses_and_the_release_accepts_fails(checked: None) -> None:
    with pytest.raises(Disagreement, match="tests/vllm_grammar.py refuses"):
        parse_launch([*EP, "--max-num-seqs", "8"])


def test_a_field_read_otherwise_fails(checked: None) -> None:
    """The grammar's namespace against the release's parse, field by field (here the grammar's DP is off)."""
    argv = ("/mnt/models", "-dp", "8", "--enable-expert-parallel")
    ns = vllm_grammar.parser(True).read(argv)
    CROSS_CHECK(Launch("serve", argv), ns)
    ns.data_parallel_size = 4
    with pytest.raises(Disagreement, match="data_parallel_size: grammar 4, vLLM 8"):
        CROSS_CHECK(Launch("serve", argv), ns)


def test_a_refusal_both_share_passes(checked: None) -> None:
    with pytest.raises(GrammarError, match="ambiguous"):
        parse_launch(["vllm", "serve", "/mnt/models", "--data-parallel-s", "4"])


def test_huggingfaceserver_is_judged_by_the_vllm_its_image_bundles(checked: None) -> None:
    """Its own flags are not vLLM's; the TP it sets from the visible GPUs is."""
    argv = ["--model_name=qwen", "--model_dir", "/mnt/models", "--enable-expert-parallel"]
    assert huggingfaceserver_vllm_argv(argv, 8) == ["--enable-expert-parallel", "--tensor-parallel-size", "8"]
    assert HUGGINGFACESERVER_RELEASE == "0.24.0"
    ns = parse_huggingfaceserver(argv, visible_gpus=8)
    assert (ns.tensor_parallel_size, ns.enable_expert_parallel) == (8, True)
    with pytest.raises(Disagreement, match=r"vLLM 0\.24\.0 \(api_server, parse_known_args"):
        CROSS_CHECK(Launch("huggingfaceserver", tuple(argv), gpus=8), argparse.Namespace(
            **{**vars(ns), "tensor_parallel_size": 4}))


def test_huggingfaceserver_reads_only_its_known_spellings_as_its_vllm_does(checked: None) -> None:
    """parse_known_args: an underscore spelling of a vLLM flag is dropped, huggingfaceserver's own
    `--max_model_len` is read, an unknown flag is ignored (the cross-check holds the grammar to 0.24.0)."""
    ns = parse_huggingfaceserver(["--model_name=q", "--data_parallel_size=2", "--max_model_len=4096",
                                  "--no-such-flag", "--enable-expert-parallel"], visible_gpus=8)
    assert (ns.data_parallel_size, ns.max_model_len, ns.tensor_parallel_size) == (1, 4096, 8)
