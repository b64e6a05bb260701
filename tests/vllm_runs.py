"""What vLLM runs: every launch the fast grammar (tests/vllm_grammar.py) parses is judged again by the real
vLLM release that runs it, and a test fails when the two disagree.

`CROSS_CHECK` is registered in `vllm_grammar.CHECKS` for the whole test session by tests/conftest.py (unless
EP_WEBHOOK_GRAMMAR_ONLY=1). For each parse it asks the release's own parser and ParallelConfig
(tests/vllm_releases.py `Judge`, one process per release, started on first use and kept for the session;
verdicts cached per release, entry, argv, GPUs and env) and raises `Disagreement` when
- the grammar accepts what the release refuses (its parser, or its ParallelConfig's start-up checks);
- the grammar refuses what the release accepts;
- a field both return differs (every field of the grammar's namespace that the release's namespace has; a
  None in the grammar means "not given" and is not compared; a JSON object of the grammar must be part of the
  release's config object, which adds the defaults).

Which release: the caller's (`parse_launch(..., release=...)`, e.g. from a versioned image or
`ep.vllm-version`) when it is one of `RELEASES` (another one is not judged and is counted in `unjudged`);
else the newest, which the grammar models and the webhook assumes for an image without a version; for
`python -m huggingfaceserver` the vLLM that KServe's shipped huggingfaceserver image bundles
(webhook/kserve/images.py: KServe v0.20.0, vLLM 0.24.0).

GPUs for the ParallelConfig: the caller's (`gpus=`; for huggingfaceserver its visible GPUs), else TP x DP x PP
of the grammar's parse (the test asserts the layout itself).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.vllm_grammar import GrammarError, Launch
from tests.vllm_releases import NEWEST, RELEASES, Judge, Verdict, releases
from webhook.kserve import shipped
from webhook.kserve.images import release_of


GRAMMAR_ONLY = os.environ.get("EP_WEBHOOK_GRAMMAR_ONLY", "") not in ("", "0")
"""EP_WEBHOOK_GRAMMAR_ONLY=1: the session does not register `CROSS_CHECK` (inner loop only; CI never sets it)."""


class Disagreement(AssertionError):
    """The grammar and the real release read a launch differently (one of them refuses it, or a field differs)."""


def _huggingfaceserver_release() -> str:
    image = next(r.image for r in shipped.RUNTIMES if r.name == "kserve-huggingfaceserver")
    found = release_of(image)
    assert found is not None, image
    return ".".join(map(str, found))


HUGGINGFACESERVER_RELEASE = _huggingfaceserver_release()
"""The vLLM in the image of KServe's shipped kserve-huggingfaceserver runtime."""

HUGGINGFACESERVER_OWN = ("--model_name", "--model-name", "--model_dir", "--model-dir", "--model_id", "--model-id",
                         "--backend")
"""huggingfaceserver's own options that the grammar knows, each taking a value (KServe v0.20.0
python/kserve/kserve/model_server.py `--model_name`; python/huggingfaceserver/huggingfaceserver/__main__.py
the others): vLLM's parser does not get them."""


HUGGINGFACESERVER_SAME_DEST = {"--max_model_len": "--max-model-len", "--max_length": "--max-model-len",
                               "--trust_remote_code": "--trust-remote-code"}
"""huggingfaceserver's own options that fill a vLLM engine argument (KServe v0.20.0 huggingfaceserver/__main__.py),
and vLLM's spelling of it."""


def huggingfaceserver_vllm_argv(argv: Sequence[str], visible_gpus: int | None) -> list[str]:
    """What vLLM's parser reads of huggingfaceserver's argv (the words after `python -m huggingfaceserver`):
    its own options (`HUGGINGFACESERVER_OWN`) removed, those filling an engine argument in vLLM's spelling
    (`HUGGINGFACESERVER_SAME_DEST`); with `visible_gpus`, the tensor parallel size it sets to the GPU count
    after parsing (KServe v0.20.0 huggingfaceserver/vllm/vllm_model.py) as a last flag. The release parses the
    rest with `parse_known_args`, as huggingfaceserver's `__main__.py` does."""
    words: list[str] = []
    skip = False
    for word in argv:
        name, eq, value = word.partition("=")
        if skip:
            skip = False
        elif word in HUGGINGFACESERVER_OWN:
            skip = True
        elif name in HUGGINGFACESERVER_SAME_DEST:
            words.append(HUGGINGFACESERVER_SAME_DEST[name] + eq + value)
        elif not (eq and name in HUGGINGFACESERVER_OWN):
            words.append(word)
    return words + (["--tensor-parallel-size", str(visible_gpus)] if visible_gpus is not None else [])


@dataclass
class CrossCheck:
    """The check registered in `vllm_grammar.CHECKS` (see the module docstring); holds the judges and verdicts."""

    found: dict[str, Judge] | None = None
    verdicts: dict[tuple[Any, ...], Verdict] = field(default_factory=dict)
    judged: int = 0
    """Parses judged (cached verdicts included)."""
    unjudged: dict[str, int] = field(default_factory=dict)
    """Parses not judged, by the release the caller named (not one of `RELEASES`)."""

    def judges(self) -> dict[str, Judge]:
        """A judge per release (built on first use: `releases()` finds or builds the venvs)."""
        if self.found is None:
            self.found = {release: Judge(release, python) for release, python in releases().items()}
        return self.found

    def close(self) -> None:
        """Stop the judge processes."""
        for judge in (self.found or {}).values():
            judge.close()
        self.found = None

    def __call__(self, launch: Launch, result: argparse.Namespace | GrammarError) -> None:
        ns = result if isinstance(result, argparse.Namespace) else None
        if launch.entry == "huggingfaceserver" and ns is not None and ns.backend == "huggingface":
            return  # huggingfaceserver's own transformers backend: no vLLM runs (`auto` is vLLM for the suite's MoE models)
        release = launch.release or (HUGGINGFACESERVER_RELEASE if launch.entry == "huggingfaceserver" else NEWEST)
        if release not in RELEASES:
            self.unjudged[release] = self.unjudged.get(release, 0) + 1
            return
        gpus = launch.gpus
        if gpus is None:
            gpus = ns.tensor_parallel_size * ns.data_parallel_size * ns.pipeline_parallel_size if ns else 1
        argv, entry, known = list(launch.argv), launch.entry, False
        if entry == "huggingfaceserver":
            argv, entry, known = huggingfaceserver_vllm_argv(argv, launch.gpus), "api_server", True
        key = (release, entry, tuple(argv), gpus, launch.env, known)
        verdict = self.verdicts.get(key)
        if verdict is None:
            verdict = self.verdicts[key] = self.judges()[release].judge(argv, gpus, dict(launch.env), entry, known)
        self.judged += 1
        where = (f"vLLM {release} ({entry}{', parse_known_args' if known else ''}, {gpus} GPUs"
                 f"{', env ' + str(dict(launch.env)) if launch.env else ''}) on {argv}")
        if ns is None:
            if verdict.ok:
                raise Disagreement(f"tests/vllm_grammar.py refuses ({result}) what {where} accepts")
            return
        if not verdict.ok:
            raise Disagreement(f"{where} refuses at its {verdict.stage} stage what tests/vllm_grammar.py accepts: "
                               f"{verdict.error}")
        differ = differences(ns, verdict.parsed)
        if differ:
            raise Disagreement(f"{where} reads otherwise than tests/vllm_grammar.py: " + "; ".join(differ))


def _agrees(mine: Any, real: Any) -> bool:
    if isinstance(mine, dict) and isinstance(real, dict):
        return all(k in real and _agrees(v, real[k]) for k, v in mine.items())
    if isinstance(mine, (list, tuple)) and isinstance(real, (list, tuple)):
        return len(mine) == len(real) and all(_agrees(a, b) for a, b in zip(mine, real))
    return bool(mine == real and isinstance(mine, bool) == isinstance(real, bool))


def differences(ns: argparse.Namespace, parsed: dict[str, Any]) -> list[str]:
    """`name: grammar X, vLLM Y` for each field of the grammar's namespace that the release's parse has and
    reads otherwise (None in the grammar: not given, not compared; a JSON object: its keys, the release adds
    defaults)."""
    return [f"{name}: grammar {mine!r}, vLLM {parsed[name]!r}" for name, mine in sorted(vars(ns).items())
            if mine is not None and name in parsed and not _agrees(mine, parsed[name])]


CROSS_CHECK = CrossCheck()
"""The session's cross-check (tests/conftest.py registers it and closes its judges)."""
