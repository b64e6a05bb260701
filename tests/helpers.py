"""Builders and checks shared by the tests."""

from __future__ import annotations

import copy
import json
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
