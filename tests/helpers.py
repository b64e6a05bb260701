"""Builders and checks shared by the tests."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from webhook.admission.kinds import mutate
from webhook.kserve.servingruntime import spec_from_object
from webhook.kserve.selection import Runtimes
from webhook.core.options import Options
from webhook.core.verdict import Verdict

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


SHARED = Path(os.environ.get("EP_WEBHOOK_SHARED_DIR") or ROOT.parent / "shared")
"""KServe's manifests (read-only test data): ../shared beside the checkout, or EP_WEBHOOK_SHARED_DIR."""
RUNTIMES_DIR = SHARED / "kserve" / "runtimes"


def shipped_runtime_docs() -> list[dict[str, Any]]:
    """KServe's own LLM ClusterServingRuntimes, read from ../shared (never copied here)."""
    docs = [d for p in sorted(RUNTIMES_DIR.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    assert docs, f"no runtimes in {RUNTIMES_DIR}"
    return docs


def shipped_runtimes() -> Runtimes:
    """The shipped runtimes as the webhook's cluster cache holds them."""
    specs = [spec_from_object(d["kind"], d) for d in shipped_runtime_docs()]
    return Runtimes(cluster=tuple(s for s in specs if s is not None))


# What a runtime's image runs when neither the runtime nor the InferenceService sets a command
# (KServe's huggingfaceserver image: ENTRYPOINT ["python", "-m", "huggingfaceserver"]).
IMAGE_ENTRYPOINTS = {"huggingfaceserver": ["python", "-m", "huggingfaceserver"]}


def kserve_container(obj: dict[str, Any], runtime_doc: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The argv KServe's controller gives the predictor's container, and its env.

    KServe v0.20 `MergeRuntimeContainers`: the InferenceService's command replaces
    the runtime's, args are the runtime's followed by the InferenceService's; then
    `ReplacePlaceholders` renders `{{.Name}}` from the object's metadata. With no
    command at all the image's entrypoint runs.
    """
    rc = next(c for c in runtime_doc["spec"]["containers"] if c["name"] == "kserve-container")
    m = model(obj)
    command = list(m.get("command") or rc.get("command") or [])
    args = list(rc.get("args") or []) + list(m.get("args") or [])
    name = obj["metadata"]["name"]
    args = [a.replace("{{.Name}}", name) for a in args]
    command = [a.replace("{{.Name}}", name) for a in command]
    if not command:
        image = rc["image"].split("/")[-1].split(":")[0]
        command = IMAGE_ENTRYPOINTS[image.removesuffix("-gpu")]
    env = {e["name"]: e["value"] for e in rc.get("env", []) + m.get("env", []) if "value" in e}
    return command + args, env
def json_after(argv: Sequence[str], flag: str) -> Any:
    """The JSON word after the last `flag` in `argv`, read as words (for values vLLM itself refuses or ignores,
    e.g. hostile strings in --eplb-config: no release reads them, so its parser cannot be the reader)."""
    at = len(argv) - 1 - list(reversed(argv)).index(flag)
    return json.loads(argv[at + 1])


def huggingfaceserver_vllm_args(argv: Sequence[str], gpus: int) -> list[str]:
    """What vLLM's own parser gets in a huggingfaceserver pod that executed `argv` (`python -m huggingfaceserver
    ...`), on `gpus` GPUs (KServe v0.20.0, python/huggingfaceserver/): its parser is vLLM's `make_arg_parser`
    around options of its own (`vllm/utils.py`), of which the shipped runtime passes only `--model_name`; after
    parsing it sets the tensor parallel size to the GPU count (`vllm/vllm_model.py`), which a last flag does."""
    assert list(argv[:3]) == ["python", "-m", "huggingfaceserver"], argv
    return [w for w in argv[3:] if not w.startswith("--model_name")] + ["--tensor-parallel-size", str(gpus)]


# -- executing commands with stand-ins that record vLLM's argv ---------------------------------

STAND_IN = r"""#!/bin/bash
if [ "$(basename "$0")" = vllm ] && [ "$1" = --version ]; then echo 0.33.0; exit 0; fi
if [ "$(basename "$0")" = getent ]; then echo "10.1.2.3 $2"; exit 0; fi
if [ "$1" = "-c" ]; then echo 8; exit 0; fi
if [ "$(basename "$0")" = nvidia-smi ]; then printf 'GPU %s\n' 0 1 2 3 4 5 6 7; exit 0; fi
{ printf '%s\0' "$(basename "$0")"; printf '%s\0' "$@"; } > "$ARGV_OUT"
"""
STAND_IN_NAMES = ("vllm", "python3", "python", "nvidia-smi", "getent")


def stand_in_bin(folder: Path) -> Path:
    """A folder of stand-ins for vllm, python, nvidia-smi and getent: each records its argv (NUL-separated)
    in $ARGV_OUT; `python -c ...` prints 8 and nvidia-smi lists 8 GPUs, as scripts computing GPU counts
    expect; `vllm --version` says 0.33.0 and getent resolves any name, as KServe's presets expect."""
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
