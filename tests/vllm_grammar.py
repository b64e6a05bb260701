"""A model of vLLM's server argument grammar, for checking edited argv.

Built from vLLM's documented CLI (engine arguments and `vllm serve --help`):
argparse with `--long`/short aliases (-tp, -dp, -pp, -ep), `--flag=value`
forms, unique prefixes of long flags (argparse's `allow_abbrev`, on in vLLM), BooleanOptionalAction pairs (`--enable-expert-parallel` /
`--no-enable-expert-parallel`), and the FlexibleArgumentParser rule that
underscores in a `--long` name mean dashes. The last occurrence wins.
Parsing the webhook's output with it checks what vLLM would actually see,
instead of comparing strings with the test's own expectations. It is the fast
inner-loop model only: tests/vllm/test_real_vllm.py checks it against the
newest real release's own parser, which judges the webhook's output too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

# vLLM 0.33: `All2AllBackend` in vllm/config/parallel.py (argparse choices).
ALL2ALL = [
    "naive",
    "pplx",
    "deepep_high_throughput",
    "deepep_low_latency",
    "deepep_v2",
    "mori_high_throughput",
    "mori_low_latency",
    "moonep",
    "nixl_ep",
    "allgather_reducescatter",
    "flashinfer_all2allv",
    "flashinfer_nvlink_two_sided",
    "flashinfer_nvlink_one_sided",
]


class GrammarError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise GrammarError(message)

    def parse_args(self, args: Sequence[str] | None = None, namespace: object = None) -> argparse.Namespace:  # type: ignore[override]
        normalized = []
        for a in args or []:
            if a.startswith("--"):
                key, eq, value = a.partition("=")
                a = key.replace("_", "-") + eq + value
            normalized.append(a)
        return super().parse_args(normalized, namespace)  # type: ignore[arg-type]


def parser(positional_model: bool) -> _Parser:
    p = _Parser(prog="vllm", add_help=False)  # argparse's default allow_abbrev=True, as vLLM's parser
    if positional_model:
        p.add_argument("model_tag", nargs="?")
    p.add_argument("--model")
    p.add_argument("--port", type=int)
    p.add_argument("--host")
    p.add_argument("--served-model-name", nargs="+")
    p.add_argument("--dtype")
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--enforce-eager", action="store_true")
    p.add_argument("--config")
    p.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    p.add_argument("--data-parallel-size", "-dp", type=int, default=1)
    p.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    p.add_argument("--enable-expert-parallel", "-ep", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--all2all-backend", choices=ALL2ALL)
    p.add_argument("--enable-eplb", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--eplb-config", type=json.loads)
    # multi-node data parallel and the server options KServe's presets pass
    p.add_argument("--data-parallel-size-local", "-dpl", type=int)
    p.add_argument("--data-parallel-start-rank", "-dpr", type=int)
    p.add_argument("--data-parallel-address", "-dpa")
    p.add_argument("--data-parallel-rpc-port", "-dpp", type=int)
    p.add_argument("--headless", action="store_true")
    p.add_argument("--api-server-count", type=int)
    p.add_argument("--disable-uvicorn-access-log", action="store_true")
    p.add_argument("--disable-access-log-for-endpoints")
    p.add_argument("--shutdown-timeout", type=int)
    p.add_argument("--kv-transfer-config", type=json.loads)
    p.add_argument("--enable-ssl-refresh", action="store_true")
    p.add_argument("--ssl-certfile")
    p.add_argument("--ssl-keyfile")
    return p


def parse_launch(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a whole launch (`vllm serve ...` or `python -m ...api_server ...`)."""
    words = list(argv)
    for i, w in enumerate(words[:-1]):
        if (w == "vllm" or w.endswith("/vllm")) and words[i + 1] == "serve":
            return parser(True).parse_args(words[i + 2 :])
    if "-m" in words:
        i = words.index("-m")
        module = words[i + 1]
        if module == "huggingfaceserver":
            return parse_huggingfaceserver(words[i + 2 :])
        if module == "vllm.entrypoints.openai.api_server":
            return parser(False).parse_args(words[i + 2 :])
        if module == "vllm.entrypoints.cli.main" and words[i + 2] == "serve":
            return parser(True).parse_args(words[i + 3 :])
    raise GrammarError(f"not a vLLM launch: {words[:3]}")


# KServe's huggingfaceserver (python/huggingfaceserver/huggingfaceserver/__main__.py at v0.20): its own
# flags next to vLLM's engine flags, `--backend` by enum name; with the vLLM backend,
# vllm/vllm_model.py then sets tensor_parallel_size = torch.cuda.device_count().
BACKENDS = ["auto", "huggingface", "vllm"]


def parse_huggingfaceserver(argv: Sequence[str], visible_gpus: int | None = None) -> argparse.Namespace:
    """Parse huggingfaceserver's argv; with `visible_gpus`, apply its TP override as the server does."""
    p = parser(False)
    p.add_argument("--model_name", "--model-name")
    p.add_argument("--model_dir", "--model-dir", default="/mnt/models")
    p.add_argument("--model_id", "--model-id")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    ns = p.parse_args(list(argv))
    ns.server = "huggingfaceserver"
    if visible_gpus is not None and ns.backend != "huggingface":
        ns.tensor_parallel_size = visible_gpus
    return ns
