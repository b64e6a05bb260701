"""A model of vLLM's server argument grammar, for checking edited argv.

Built from vLLM's documented CLI (engine arguments and `vllm serve --help`):
argparse with `--long`/short aliases (-tp, -dp, -pp, -ep), `--flag=value`
forms, unique prefixes of long flags (argparse's `allow_abbrev`, on in vLLM), BooleanOptionalAction pairs (`--enable-expert-parallel` /
`--no-enable-expert-parallel`), and the FlexibleArgumentParser rule that
underscores in a `--long` name mean dashes. The last occurrence wins.
Parsing the webhook's output with it checks what vLLM would actually see,
instead of comparing strings with the test's own expectations. It is the fast
inner-loop model only: every parse is also handed to the checks in `CHECKS`,
where tests/conftest.py registers tests/vllm_runs.py's cross-check with the
real release the launch targets (off with EP_WEBHOOK_GRAMMAR_ONLY=1), and
tests/vllm/test_real_vllm.py checks it against a corpus of spellings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence

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


# vLLM 0.33: `EPLBConfig` in vllm/config/parallel.py, validated by the parser when it reads --eplb-config
# (pydantic: an unknown key is refused, `policy` is `EPLBPolicyOption`, `communicator` is
# `EPLBCommunicatorBackend` or null).
EPLB_KEYS = ("window_size", "step_interval", "num_redundant_experts", "log_balancedness",
             "log_balancedness_interval", "use_async", "policy", "communicator", "enable_migration_batching")
EPLB_CHOICES = {"policy": ("default",), "communicator": ("torch_nccl", "torch_gloo", "torch_xccl", "nixl", "pynccl", None)}


class GrammarError(Exception):
    pass


def eplb_config(text: str, unknown_keys: bool = False) -> dict[str, object]:
    """`--eplb-config JSON` as vLLM 0.33 reads it: a JSON object of `EPLB_KEYS`, `EPLB_CHOICES` values;
    `unknown_keys`: other keys pass (vLLM up to 0.15.1 ignores them, ../shared/vllm/README.md)."""
    config = json.loads(text)
    if not isinstance(config, dict):
        raise ValueError("not a JSON object")
    for key, value in config.items():
        if key not in EPLB_KEYS and not unknown_keys:
            raise ValueError(f"unknown EPLBConfig key {key!r}")
        if key in EPLB_CHOICES and value not in EPLB_CHOICES[key]:
            raise ValueError(f"EPLBConfig {key} must be one of {EPLB_CHOICES[key]}")
    return config


def eplb_config_of_old_releases(text: str) -> dict[str, object]:
    """`eplb_config` as vLLM up to 0.15.1 reads it: unknown keys are dropped."""
    return {k: v for k, v in eplb_config(text, unknown_keys=True).items() if k in EPLB_KEYS}


def serve_words(args: Sequence[str]) -> list[str]:
    """What vLLM 0.33's `FlexibleArgumentParser.parse_args` (vllm/utils/argparse_utils.py) makes of the words
    after `vllm serve` before parsing: the first `--model M` / `--model=M` becomes the positional model (so
    with a positional model as well, the parser refuses the extra word); a launch without a positional model,
    without `--config`, with `--served-model-name` is refused."""
    words = list(args)
    at = next((i for i, w in enumerate(words) if w == "--model" or (w.startswith("--model=") and len(w) > 8)), None)
    if at is not None and words[at] == "--model":
        words = [*words[at + 1 : at + 2], *words[:at], *words[at + 2 :]]
    elif at is not None:
        words = [words[at].removeprefix("--model="), *words[:at], *words[at + 1 :]]
    if words and words[0].startswith("-") and not any(w == "--config" or w.startswith("--config=") for w in words) \
            and any(w.split("=", 1)[0] in _SERVED_NAMES for w in words):
        raise GrammarError("`model` should be provided as the first positional argument when using `vllm serve`")
    return words


_SERVED_NAMES = {"--served-model-name", "--served_model_name", "--served-model_name", "--served_model-name"}


@dataclasses.dataclass(frozen=True)
class Launch:
    """One argv the grammar parsed, as the checks in `CHECKS` get it.

    `entry`: `serve` (the words after `vllm serve`, model first), `api_server` (after `python -m
    vllm.entrypoints.openai.api_server`) or `huggingfaceserver` (after `python -m huggingfaceserver`);
    `release`: the vLLM release the caller says runs it (None: the one the launch targets by default);
    `gpus`: the pod's GPU count when the caller knows it (for huggingfaceserver: the visible GPUs it sets
    the tensor parallel size to); `env`: the container's literal env when the caller knows it."""

    entry: str
    argv: tuple[str, ...] = ()
    release: str | None = None
    gpus: int | None = None
    env: tuple[tuple[str, str], ...] = ()


Check = Callable[[Launch, "argparse.Namespace | GrammarError"], None]
CHECKS: list[Check] = []
"""Called with every parse and its result (the namespace, or the GrammarError about to be raised); a check
raises to fail the test. Empty unless a test session registers one (tests/conftest.py)."""


def _judged(launch: Launch, parse: Callable[[], argparse.Namespace]) -> argparse.Namespace:
    try:
        ns = parse()
    except GrammarError as e:
        for check in CHECKS:
            check(launch, e)
        raise
    for check in CHECKS:
        check(launch, ns)
    return ns


def _env(env: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((env or {}).items()))


class _Parser(argparse.ArgumentParser):
    launch = Launch("serve")
    """What the checks are told about this parser's parses (`parse_launch` sets release, GPUs, env)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise GrammarError(message)

    def read(self, args: Sequence[str]) -> argparse.Namespace:
        """The grammar's parse alone (no checks)."""
        normalized = []
        for a in serve_words(args) if self.launch.entry == "serve" else args:
            if a.startswith("--"):
                key, eq, value = a.partition("=")
                a = key.replace("_", "-") + eq + value
            normalized.append(a)
        return super().parse_args(normalized)

    def parse_args(self, args: Sequence[str] | None = None, namespace: object = None) -> argparse.Namespace:  # type: ignore[override]
        words = list(args or [])
        return _judged(dataclasses.replace(self.launch, argv=tuple(words)), lambda: self.read(words))


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split(".") if n.isdigit())


def parser(positional_model: bool, release: str | None = None) -> _Parser:
    """vLLM 0.33's parser of `vllm serve` (`positional_model`) or of the api_server module; with an older
    `release`, the `--eplb-config` keys as that release reads them (the rest stays 0.33's)."""
    p = _Parser(prog="vllm", add_help=False)  # argparse's default allow_abbrev=True, as vLLM's parser
    p.launch = Launch("serve" if positional_model else "api_server")
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
    lenient = release is not None and _release(release) < (0, 16)
    p.add_argument("--eplb-config", type=eplb_config_of_old_releases if lenient else eplb_config)
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


def parse_launch(argv: Sequence[str], *, release: str | None = None, gpus: int | None = None,
                 env: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse a whole launch (`vllm serve ...` or `python -m ...api_server ...`). `release`, `gpus` and `env`
    only tell the checks (`CHECKS`) which vLLM runs it, on how many GPUs, with which env (see `Launch`);
    except that huggingfaceserver sets its tensor parallel size to `gpus` (`parse_huggingfaceserver`)."""
    words = list(argv)

    def on(p: _Parser) -> _Parser:
        p.launch = dataclasses.replace(p.launch, release=release, gpus=gpus, env=_env(env))
        return p

    for i, w in enumerate(words[:-1]):
        if (w == "vllm" or w.endswith("/vllm")) and words[i + 1] == "serve":
            return on(parser(True, release)).parse_args(words[i + 2 :])
    if "-m" in words:
        i = words.index("-m")
        module = words[i + 1]
        if module == "huggingfaceserver":
            return parse_huggingfaceserver(words[i + 2 :], gpus, release=release, env=env)
        if module == "vllm.entrypoints.openai.api_server":
            return on(parser(False, release)).parse_args(words[i + 2 :])
        if module == "vllm.entrypoints.cli.main" and words[i + 2] == "serve":
            return on(parser(True, release)).parse_args(words[i + 3 :])
    raise GrammarError(f"not a vLLM launch: {words[:3]}")


# KServe's huggingfaceserver (python/huggingfaceserver/huggingfaceserver/__main__.py at v0.20): its own
# flags next to vLLM's engine flags, `--backend` by enum name, read with `parse_known_args` (unknown words
# are ignored, and `--long_name` spellings of vLLM's flags are unknown: only vLLM's own parse_args rewrites
# them); with the vLLM backend, vllm/vllm_model.py then sets tensor_parallel_size = torch.cuda.device_count().
BACKENDS = ["auto", "huggingface", "vllm"]


def parse_huggingfaceserver(argv: Sequence[str], visible_gpus: int | None = None, *, release: str | None = None,
                            env: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse huggingfaceserver's argv; with `visible_gpus`, apply its TP override as the server does.
    `release` and `env` only tell the checks (`CHECKS`)."""
    p = parser(False, release)
    p.add_argument("--model_name", "--model-name")
    p.add_argument("--model_dir", "--model-dir", default="/mnt/models")
    p.add_argument("--model_id", "--model-id")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    # its own spellings of two engine options, into vLLM's destinations
    p.add_argument("--max_model_len", "--max_length", dest="max_model_len", type=int)
    p.add_argument("--trust_remote_code", action="store_true")

    def parse() -> argparse.Namespace:
        ns, _ = argparse.ArgumentParser.parse_known_args(p, list(argv))
        ns.server = "huggingfaceserver"
        if visible_gpus is not None and ns.backend != "huggingface":
            ns.tensor_parallel_size = visible_gpus
        return ns

    return _judged(Launch("huggingfaceserver", tuple(argv), release, visible_gpus, _env(env)), parse)
