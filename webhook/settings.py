"""What users write (annotations) and what the platform sets (options).

Annotations are the user-facing interface: `ep.enabled` and a few optional
knobs. Options are the cluster-side parameters of the engine; the policy
(another module) will choose them per namespace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from webhook.errors import Denied
from webhook.flags import ALL2ALL_BACKENDS
from webhook.gpus import DEFAULT_GPU_RESOURCES

ENABLED = "ep.enabled"
TENSOR_PARALLEL_SIZE = "ep.tensor-parallel-size"
ALL2ALL_BACKEND = "ep.all2all-backend"
EPLB = "ep.eplb"
EPLB_CONFIG = "ep.eplb-config"
# LLMInferenceService multi-node roles: pods (nodes) per data-parallel group.
NODES = "ep.nodes"
# Owned by the webhook: what it changed, so that turning EP off can undo it.
STATE = "vllm-ep-webhook.io/original"

OnConflict = Literal["override", "reject"]
Mode = Literal["optIn", "enforce", "forbid"]


@dataclass(frozen=True)
class Options:
    """Cluster-side engine parameters (a policy picks them per namespace).

    `mode`: optIn (EP where annotated), enforce (EP wherever it applies; opting
    out only with `allow_opt_out`), forbid (no EP at all). `rule` names the
    policy rule that chose these options, for messages.
    """

    mode: Mode = "optIn"
    allow_opt_out: bool = True
    rule: str = "defaults"
    on_conflict: OnConflict = "override"
    tensor_parallel_size: int = 1
    gpu_resources: tuple[str, ...] = DEFAULT_GPU_RESOURCES
    all2all_backends: tuple[str, ...] = ALL2ALL_BACKENDS
    max_data_parallel_size: int | None = None


@dataclass(frozen=True)
class Request:
    """The EP settings one InferenceService asks for through annotations."""

    tensor_parallel_size: int
    all2all_backend: str | None = None
    eplb: bool | None = None
    eplb_config: str | None = None


def _bool(annotations: dict[str, object], key: str) -> bool | None:
    if key not in annotations:
        return None
    value = annotations[key]
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "true":
        return True
    if text == "false":
        return False
    raise Denied(f'annotation {key} is {_show(value)}; it must be "true" or "false"')


def _show(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def ep_enabled(annotations: dict[str, object]) -> bool | None:
    """True/False as written, None when the annotation is absent."""
    return _bool(annotations, ENABLED)


def read_request(annotations: dict[str, object], options: Options) -> Request:
    """Validate the optional annotations of an EP-enabled object."""
    tp = options.tensor_parallel_size
    if TENSOR_PARALLEL_SIZE in annotations:
        raw = annotations[TENSOR_PARALLEL_SIZE]
        text = raw.strip() if isinstance(raw, str) else ""
        if not (text.isascii() and text.isdigit()) or int(text) < 1 or len(text) > 6:
            raise Denied(
                f"annotation {TENSOR_PARALLEL_SIZE} is {_show(raw)}; it must be a whole number of at "
                f'least 1 that divides the GPU count, e.g. "2"'
            )
        tp = int(text)

    backend: str | None = None
    if ALL2ALL_BACKEND in annotations:
        raw = annotations[ALL2ALL_BACKEND]
        backend = raw.strip() if isinstance(raw, str) else None
        if backend not in options.all2all_backends:
            raise Denied(
                f"annotation {ALL2ALL_BACKEND} is {_show(raw)}; use one of: "
                f"{', '.join(options.all2all_backends)}"
            )

    config: str | None = None
    if EPLB_CONFIG in annotations:
        raw = annotations[EPLB_CONFIG]
        try:
            parsed = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise Denied(
                f"annotation {EPLB_CONFIG} is {_show(raw)}; it must be a JSON object, "
                f'e.g. {{"window_size": 1000}}'
            )
        config = json.dumps(parsed, separators=(",", ":"))

    return Request(tp, backend, _bool(annotations, EPLB), config)
