"""Runs inside a real vLLM release's venv (scripts/vllm_envs.py): parse argvs with that release's own parser,
then build its `ParallelConfig` as `vllm serve` would, and say what it got or why it refused.

Not imported by the tests: `tests/vllm_releases.py` starts it as `PYTHON tests/vllm_judge.py` and
talks JSON lines over stdin/stdout. Each request is
`{"argv": [...], "entry": "serve" | "api_server", "env": {...}, "gpus": N, "known": false}`: `argv` is what
follows `vllm serve` (or `python -m vllm.entrypoints.openai.api_server`); `known` parses with argparse's
`parse_known_args` (unknown words ignored, no `--long_name` or `--config` rewriting), as KServe's
huggingfaceserver does. Each answer is
`{"ok": true, "parsed": {...}, "parallel": {...}, "envs": {...}}` (`envs`: see `ENVS_READ`) or `{"ok": false, "stage": "parse" | "config", "error": "..."}`.
`{"facts": true}` asks instead what the release accepts: `{"options": [...], "all2all": [...] | null,
"eplb_keys": [...] | null, "eplb_choices": {key: [...]} | null, "eplb_async_default": bool | null,
"dbo_backends": [[...], ...] | null}` (the names each Literal-typed EPLB key takes; the backend lists of the release's own
microbatching assertion, which `VllmConfig` makes and this judge does not construct).

How it stands in for a GPU node on a machine without GPUs: vLLM's modules are imported on its CPU platform,
then the platform becomes a `Platform` with vLLM's CUDA identity (its real CUDA class needs the driver)
reporting `gpus` devices. The parsed arguments become the release's `EngineArgs`, and its `ParallelConfig`
is constructed from their fields (as `create_engine_config` does, without loading a model): that
construction carries vLLM's parallel start-up checks.
The environment of each request is set around it (vLLM reads `VLLM_*` variables through `vllm.envs`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback

# this file's folder (tests/) holds a `vllm` test package that must not shadow the real vllm
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]


def _setup() -> tuple[dict, object, dict]:
    import torch

    import vllm.platforms as platforms
    from vllm.platforms.interface import Platform, PlatformEnum

    gpus = {"n": 1}
    torch.cuda.device_count = lambda: gpus["n"]  # type: ignore[assignment]

    class StandInGpu(Platform):  # vLLM's CUDA platform needs the driver (vllm._C): its identity, not its kernels
        _enum = PlatformEnum.CUDA
        device_name = "cuda"
        device_type = "cuda"
        dispatch_key = "CUDA"
        ray_device_key = "GPU"
        dist_backend = "nccl"
        device_control_env_var = "CUDA_VISIBLE_DEVICES"

        @classmethod
        def get_device_count(cls) -> int:
            return gpus["n"]

    # vLLM's modules are imported on its CPU platform (a GPU one would probe kernels at import time);
    # the stand-in takes over for what the parser and the config decide
    from vllm.platforms.cpu import CpuPlatform

    cpu = platforms._current_platform = CpuPlatform()
    parsers = {"serve": _parser("serve"), "api_server": _parser("api_server")}
    gpu = platforms._current_platform = StandInGpu()
    for module in list(sys.modules.values()):  # names vLLM's modules bound while importing
        if not getattr(module, "__name__", "").startswith("vllm"):
            continue
        if getattr(module, "current_platform", None) is cpu:
            module.current_platform = gpu
        if hasattr(module, "cuda_device_count_stateless"):
            module.cuda_device_count_stateless = lambda: gpus["n"]
    from vllm.engine import arg_utils

    return gpus, arg_utils, parsers


def _parser(entry: str) -> object:
    try:  # moved in 0.11.1
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        from vllm.utils import FlexibleArgumentParser  # type: ignore[no-redef,attr-defined]

    if entry == "api_server":
        try:
            from vllm.entrypoints.openai.cli_args import make_arg_parser
        except ImportError:
            from vllm.entrypoints.common.cli_args import make_arg_parser  # type: ignore[no-redef]
        return make_arg_parser(FlexibleArgumentParser())
    from vllm.entrypoints.cli import serve

    parser = FlexibleArgumentParser()
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    for cmd in serve.cmd_init():
        cmd.subparser_init(subparsers).set_defaults(dispatch_function=cmd.cmd)
    return parser


def _plain(value: object) -> object:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__ if not k.startswith("_")}
    return repr(value)


def _parallel_config(arg_utils: object, engine_args: object) -> object:
    """The release's own ParallelConfig built from the parsed engine arguments: every field of it that the
    engine arguments carry, unset ones (None) left to ParallelConfig's defaults as `create_engine_config`
    does. Constructing it runs the release's parallel start-up checks."""
    import dataclasses

    real = arg_utils.ParallelConfig  # type: ignore[attr-defined]
    names = [f.name for f in dataclasses.fields(real) if f.init and not f.name.startswith("_")]
    kwargs = {n: getattr(engine_args, n) for n in names if getattr(engine_args, n, None) is not None}
    with contextlib.redirect_stdout(io.StringIO()):
        return real(**kwargs)


ENVS_READ = ("VLLM_ALL2ALL_BACKEND",)
"""The variables whose value, as the release's `vllm.envs` reads them, each answer reports."""


def _envs_read() -> dict:
    """The value of each of `ENVS_READ` as the release's `vllm.envs` gives it in the request's environment
    (what its communicators read: before 0.11.1 the all2all backend comes from there only); a variable the
    release does not know is left out. A value the release refuses raises its own error."""
    import vllm.envs as envs

    names = getattr(envs, "environment_variables", {})
    return {name: getattr(envs, name) for name in ENVS_READ if name in names}


def _literals(config: type) -> dict:
    """The names each `Literal`-typed field of a config dataclass takes (None left out), by field."""
    import typing

    found = {}
    for name, hint in typing.get_type_hints(config).items():
        args = [hint] if typing.get_origin(hint) is typing.Literal else list(typing.get_args(hint))
        names = [str(v) for a in args if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
        if names:
            found[name] = sorted(names)
    return found


def facts(parsers: dict) -> dict:
    """What the release's `vllm serve` accepts: its option strings, the all2all backend choices (None: no
    such flag), and the keys of its EPLB config (None: no EPLBConfig)."""
    import dataclasses

    serve_parser = next(a for a in parsers["serve"]._actions if a.dest == "subparser").choices["serve"]
    options = sorted(s for a in serve_parser._actions for s in a.option_strings)
    all2all = next((a.choices for a in serve_parser._actions if "--all2all-backend" in a.option_strings), None)
    try:
        from vllm.config import EPLBConfig

        eplb_keys: list[str] | None = sorted(f.name for f in dataclasses.fields(EPLBConfig))
        eplb_choices, eplb_async_default = _literals(EPLBConfig), next(
            (f.default for f in dataclasses.fields(EPLBConfig) if f.name == "use_async"), None)
    except ImportError:
        eplb_keys, eplb_choices, eplb_async_default = None, None, None
    return {"ok": True, "options": options, "eplb_keys": eplb_keys, "dbo_backends": dbo_backends(),
            "eplb_choices": eplb_choices, "eplb_async_default": eplb_async_default,
            "all2all": None if all2all is None else sorted(str(c) for c in all2all if c is not None)}


def dbo_backends() -> list[list[str]] | None:
    """The all2all backend lists in the release's "Microbatching currently only supports" check, read from its
    own source with `ast` (the `if` around the assertion; per platform where it has branches); None without it."""
    import ast
    import pathlib

    import vllm

    for path in sorted((pathlib.Path(vllm.__file__).parent / "config").glob("*.py")):
        text = path.read_text()
        if "Microbatching currently only supports" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.If) and "Microbatching currently only supports" in ast.unparse(node):
                inner = [n for n in node.body if isinstance(n, ast.If) or isinstance(n, ast.Assert)]
                if any(isinstance(n, ast.If) and "Microbatching" in ast.unparse(n) for n in inner):
                    continue  # an outer `if`: the innermost one holds the lists
                return [[e.value for e in n.elts if isinstance(e, ast.Constant)] for n in ast.walk(node)
                        if isinstance(n, ast.List) and n.elts and all(isinstance(e, ast.Constant) for e in n.elts)]
    return None


def judge(request: dict, gpus: dict, arg_utils: object, parsers: dict) -> dict:
    entry = request.get("entry", "serve")
    argv = list(request["argv"])
    gpus["n"] = int(request.get("gpus", 1))
    saved = dict(os.environ)
    os.environ.update(request.get("env", {}))
    try:
        parser = parsers[entry]
        full = ["serve", *argv] if entry == "serve" else argv
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                if request.get("known"):  # as KServe's huggingfaceserver reads its argv: unknown words ignored
                    args, _ = parser.parse_known_args(full)  # type: ignore[attr-defined]
                else:
                    args = parser.parse_args(full)  # type: ignore[attr-defined]
        except SystemExit:
            return {"ok": False, "stage": "parse", "error": (err.getvalue() or out.getvalue()).strip()[-600:]}
        except Exception as e:  # the parser itself crashes (e.g. IndexError on a trailing dotted flag): no start
            return {"ok": False, "stage": "parse", "error": f"{type(e).__name__}: {e}"[-600:]}
        if entry == "serve":
            from vllm.entrypoints.cli import serve

            for cmd in serve.cmd_init():
                with contextlib.redirect_stdout(io.StringIO()):
                    cmd.validate(args)
            if getattr(args, "model_tag", None):
                args.model = args.model_tag
        parsed = {k: _plain(v) for k, v in vars(args).items() if k != "dispatch_function"}
        engine_args = arg_utils.EngineArgs.from_cli_args(args)  # type: ignore[attr-defined]
        try:
            config = _parallel_config(arg_utils, engine_args)
            read = _envs_read()
        except Exception as e:  # vLLM refused: the message is what the user would read in the pod's log
            return {"ok": False, "stage": "config", "error": f"{type(e).__name__}: {e}"[-600:]}
        return {"ok": True, "parsed": parsed, "parallel": _plain(config), "envs": read}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> int:
    with contextlib.redirect_stdout(sys.stderr):  # vLLM logs to stdout; only answers go there
        gpus, arg_utils, parsers = _setup()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                answer = facts(parsers) if request.get("facts") else judge(request, gpus, arg_utils, parsers)
        except Exception:
            answer = {"ok": False, "stage": "judge", "error": traceback.format_exc()[-1500:]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
