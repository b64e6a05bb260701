"""Builders and checks shared by the tests."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from webhook.engine import mutate
from webhook.settings import Options
from webhook.verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def isvc(
    command: list[str] | None = None,
    args: list[str] | None = None,
    annotations: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    requests: dict[str, Any] | None = None,
    enabled: str | None = "true",
) -> dict[str, Any]:
    """A realistic InferenceService with the given predictor container."""
    ann: dict[str, Any] = {"serving.kserve.io/deploymentMode": "RawDeployment"}
    if enabled is not None:
        ann["ep.enabled"] = enabled
    ann.update(annotations or {})
    model: dict[str, Any] = {
        "modelFormat": {"name": "vllm"},
        "storageUri": "pvc://models/qwen3-moe",
    }
    if command is not None:
        model["command"] = command
    if args is not None:
        model["args"] = args
    resources: dict[str, Any] = {}
    if limits is None and requests is None:
        limits = {"cpu": "8", "nvidia.com/gpu": "8"}
    if limits is not None:
        resources["limits"] = limits
    if requests is not None:
        resources["requests"] = requests
    model["resources"] = resources
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "qwen3", "namespace": "llm", "annotations": ann},
        "spec": {"predictor": {"model": model}},
    }


# libyaml's loader when PyYAML has it: KServe's CRDs are megabytes, and the pure-Python loader takes
# tens of seconds for them on a busy 2-core machine
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_documents(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=SAFE_LOADER))


def load_example(name: str) -> dict[str, Any]:
    data = yaml.safe_load((EXAMPLES / name).read_text())
    assert isinstance(data, dict)
    return data


def apply(obj: dict[str, Any], verdict: Verdict) -> dict[str, Any]:
    """The object as the API server would store it after the patch."""
    assert verdict.allowed, verdict.message
    # a round trip through JSON proves the patch is valid wire data
    ops = json.loads(json.dumps(list(verdict.patch)))
    result = jsonpatch.apply_patch(copy.deepcopy(obj), ops)
    assert isinstance(result, dict)
    return result


def run(obj: dict[str, Any], options: Options | None = None) -> tuple[dict[str, Any], Verdict]:
    verdict = mutate(copy.deepcopy(obj), options)
    return (apply(obj, verdict) if verdict.allowed else obj), verdict


def model(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj["spec"]["predictor"]["model"]
    assert isinstance(m, dict)
    return m


# -- executing commands with stand-ins that record vLLM's argv ---------------------------------

STAND_IN = r"""#!/bin/bash
if [ "$1" = "-c" ]; then echo 8; exit 0; fi
if [ "$(basename "$0")" = nvidia-smi ]; then printf 'GPU %s\n' 0 1 2 3 4 5 6 7; exit 0; fi
{ printf '%s\0' "$(basename "$0")"; printf '%s\0' "$@"; } > "$ARGV_OUT"
"""
STAND_IN_NAMES = ("vllm", "python3", "python", "nvidia-smi")


def stand_in_bin(folder: Path) -> Path:
    """A folder of stand-ins for vllm, python and nvidia-smi: each records its argv (NUL-separated) in
    $ARGV_OUT; `python -c ...` prints 8 and nvidia-smi lists 8 GPUs, as scripts computing GPU counts expect."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in STAND_IN_NAMES:
        p = folder / name
        p.write_text(STAND_IN)
        p.chmod(0o755)
    return folder


def recorded_argv(argv: Sequence[str], bin_dir: Path, workdir: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Execute argv (no shell of ours: argv[0] is looked up on PATH, stand-ins first) with the given
    environment; return the argv the last stand-in recorded (the vLLM launch)."""
    out = workdir / "argv"
    out.unlink(missing_ok=True)
    full = {"HOME": str(workdir), **(env or {}), "PATH": f"{bin_dir}:/usr/bin:/bin", "ARGV_OUT": str(out)}
    done = subprocess.run(list(argv), env=full, cwd=workdir, timeout=20, capture_output=True)
    assert done.returncode == 0, f"{list(argv)!r} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
    assert out.exists(), f"nothing ran vLLM: {done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
    return out.read_bytes().decode().split("\0")[:-1]
