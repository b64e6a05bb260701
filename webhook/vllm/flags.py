"""vLLM's command-line grammar, as far as the webhook depends on it.

vLLM parses its flags with argparse through a parser that turns underscores
into dashes in `--long` names before matching (`--tensor_parallel_size=2`
equals `--tensor-parallel-size 2`); the last occurrence of a flag wins and
command-line flags beat values from `--config` files. The spellings below are
the ones current vLLM documents for the flags this webhook sets or must not
leave contradicting what it sets.
"""

from __future__ import annotations

import re
from bisect import bisect_left

from webhook.vllm import releases
from webhook.vllm.options import OLDER_NEGATIONS, OPTIONS

ENABLE_EP = "--enable-expert-parallel"
DISABLE_EP = "--no-enable-expert-parallel"
TP = "--tensor-parallel-size"
DP = "--data-parallel-size"
PP = "--pipeline-parallel-size"
PCP = "--prefill-context-parallel-size"
"""Prefill context parallelism: like PP it multiplies the GPUs one data-parallel rank needs (vLLM 0.33.0's
ParallelConfig.world_size is TP x PP x PCP)."""
DP_LOCAL = "--data-parallel-size-local"
ALL2ALL = "--all2all-backend"
ENABLE_EPLB = "--enable-eplb"
DISABLE_EPLB = "--no-enable-eplb"
EPLB_CONFIG = "--eplb-config"
ENABLE_DBO = "--enable-dbo"
"""Dual-batch overlap (vLLM 0.11.0): needs a DeepEP (or, from 0.24.0, nixl_ep) all2all backend."""
DISABLE_DBO = "--no-enable-dbo"
CUDA_ONLY_ALL2ALL_BACKENDS = frozenset({
    "pplx", "deepep_high_throughput", "deepep_low_latency", "deepep_v2", "flashinfer_all2allv",
    "flashinfer_nvlink_two_sided", "flashinfer_nvlink_one_sided",
})
"""Backends built on CUDA-only kernels (DeepEP, pplx, FlashInfer), which the stock ROCm images
(vllm/vllm-openai-rocm) do not carry (../shared/vllm/README.md, "all2all backend"): on AMD GPUs use
allgather_reducescatter or mori_*."""

# Short spellings vLLM registers next to the long names.
SHORT_ALIASES: dict[str, str] = {
    "-tp": TP,
    "-dp": DP,
    "-pp": PP,
    "-pcp": PCP,
    "-ep": ENABLE_EP,
    "-dpl": "--data-parallel-size-local",
    "-dpr": "--data-parallel-start-rank",
    "-dpa": "--data-parallel-address",
    "-dpp": "--data-parallel-rpc-port",
}

# vLLM 0.33.0 pairs every `--enable-x` with `--disable-x` (../shared/vllm/README.md; checked against the
# release in tests/vllm/test_real_vllm.py): for the flags the webhook owns they mean what the `--no-` forms mean.
# On older releases they are unknown, and vLLM would refuse them: read as the negation, they are removed too.
LONG_ALIASES: dict[str, str] = {
    "--disable-expert-parallel": DISABLE_EP,
    "--disable-eplb": DISABLE_EPLB,
    "--disable-dbo": DISABLE_DBO,
}

# Flags whose presence means the pod is one member of a multi-node
# data-parallel deployment: a single-pod DP size derived from this pod's GPUs
# would be wrong there, so the engine refuses rather than guessing.
MULTI_NODE_VALUE_FLAGS = frozenset(
    {
        DP_LOCAL,
        "--data-parallel-start-rank",
        "--data-parallel-address",
        "--data-parallel-rpc-port",
        "--data-parallel-rank",
        "--nnodes",
        "--node-rank",
    }
)
MULTI_NODE_SWITCHES = frozenset({"--headless"})
MULTI_NODE_FLAGS = MULTI_NODE_VALUE_FLAGS | MULTI_NODE_SWITCHES

# The values the newest known vLLM accepts for `--all2all-backend`, exactly (its argparse choices, from
# the release table in `releases`; `passthrough`, in the list before, is refused by vLLM 0.33.0). Any other
# value makes vLLM refuse to start. A policy's `all2allBackends` may only narrow it.
ALL2ALL_RELEASE = "vLLM " + releases.show(releases.NEWEST)
_NEWEST = releases.profile(releases.NEWEST)
assert _NEWEST is not None
ALL2ALL_BACKENDS: tuple[str, ...] = tuple(sorted(_NEWEST.all2all_backends))
# Accepted by vLLM 0.33 for compatibility, but it falls back to its default
# backend with a warning: the webhook passes them on and says so.
FALLBACK_ALL2ALL_BACKENDS = frozenset({"naive", "pplx"})

_NEGATIVE_NUMBER = re.compile(r"-\d+$|-\d*\.\d+$")


AMBIGUOUS = "?"
"""How `canonical` marks a prefix of several options: vLLM's parser stops with "ambiguous option"."""
_EXACT: dict[str, str] = {**{o: o for o in OPTIONS}, **SHORT_ALIASES, **LONG_ALIASES}
"""Every whole spelling and the long name it means: one lookup for the words users write in full."""


def matches(spelling: str) -> tuple[str, ...]:
    """The options of vLLM (`options.OPTIONS`) that `spelling` is a prefix of, as argparse's abbreviation
    matching finds them (it is on in vLLM's parser): one means that option, several an error. A `--no-` spelling
    that is a prefix of none of them is matched against the negations older releases have
    (`options.OLDER_NEGATIONS`: `--no-enable-expert` is `--no-enable-expert-parallel` there)."""
    i = bisect_left(OPTIONS, spelling)
    found = []
    while i < len(OPTIONS) and OPTIONS[i].startswith(spelling):
        found.append(OPTIONS[i])
        i += 1
    if not found and spelling.startswith("--no-"):  # a negation older releases have (0.33: --disable-x instead)
        older = tuple(o for o in OLDER_NEGATIONS if o.startswith(spelling))
        return (spelling,) if spelling in older else older  # a whole option is that option, as in argparse
    return tuple(found)


def canonical(spelling: str) -> str:
    """The long name vLLM's parser would match for a flag spelling.

    Underscores in a `--long` name are dashes (vLLM's FlexibleArgumentParser), short aliases and vLLM 0.33's
    `--disable-x` map to their long names, and a unique prefix of an option is that option (`--tensor-parallel`
    is `--tensor-parallel-size`, `-e` is `-ep`). A prefix of several options comes back as AMBIGUOUS + the
    spelling; a word that is no option's prefix comes back as written.
    """
    long = spelling.replace("_", "-") if spelling[1:2] == "-" else spelling
    exact = _EXACT.get(long)
    if exact is not None:
        return exact
    found = matches(long)
    if len(found) == 1:
        return _EXACT.get(found[0], found[0])
    if len(found) > 1:
        return AMBIGUOUS + spelling
    return long


def looks_like_flag(text: str) -> bool:
    """Would argparse take this word as an option rather than a value?"""
    return text.startswith("-") and len(text) > 1 and not (
        (text[1] == "." or text[1].isdecimal()) and _NEGATIVE_NUMBER.match(text)  # isdecimal: exactly what \d matches
    )


def read_flag(literal: str | None, prefix: str) -> tuple[str, str | None, bool] | None:
    """Read a word as a flag, if it is one: (its spelling, the part after `=` or None when there is no `=`,
    whether that part expands at run time, its text then unknown and None). Dynamic words are flags only
    via `--x=$V`. `canonical(spelling)` is the flag it means."""
    if literal is not None:
        if literal[:1] != "-" or literal == "--" or not looks_like_flag(literal):  # most words: values, paths
            return None
        spelling, eq, value = literal.partition("=")
        return spelling, value if eq else None, False
    if prefix.startswith("-") and "=" in prefix:
        return prefix.partition("=")[0], None, True
    return None
