"""What users write: the `ep.*` annotations, read and validated.

Annotations are the user-facing interface: `ep.enabled` and a few optional
knobs, the same on every kind. The webhook's own annotation holds the undo
record (see `undo`).
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping
from typing import NamedTuple

from webhook.base.errors import Denied
from webhook.core.options import Options
from webhook.vllm.releases import Version, parse_version

ENABLED = "ep.enabled"
TENSOR_PARALLEL_SIZE = "ep.tensor-parallel-size"
ALL2ALL_BACKEND = "ep.all2all-backend"
EPLB = "ep.eplb"
EPLB_CONFIG = "ep.eplb-config"
VLLM_VERSION = "ep.vllm-version"
"""The vLLM release the pod runs, when its image does not say (e.g. "0.11.2")."""
NODES = "ep.nodes"
"""LLMInferenceService multi-node roles: pods (nodes) per data-parallel group."""
UNDO_RECORD = "vllm-ep-webhook.io/original"
"""Owned by the webhook: what it changed, so that turning EP off can undo it."""
_MAX_NODES = 4096
MAX_EPLB_CONFIG_LENGTH = 2048
"""The longest `ep.eplb-config` the webhook reads, in characters; all of vLLM's EPLB keys (window_size,
step_interval, num_redundant_experts, log_balancedness, use_async, policy, ...: `EPLBConfig` in
vllm/config/parallel.py, 0.10.2 to 0.33) with values take a few hundred."""
MAX_EPLB_CONFIG_DEPTH = 8
"""The deepest nesting of objects and arrays in `ep.eplb-config`; vLLM's EPLB keys take scalars (depth 1)."""


def annotations_of(obj: Mapping[str, object]) -> dict[str, object]:
    """metadata.annotations ({} when absent); Denied when metadata or annotations are not maps."""
    metadata = obj.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise Denied("metadata must be an object")
    annotations = metadata.get("annotations")
    if annotations is None:
        return {}
    if not isinstance(annotations, dict):
        raise Denied("metadata.annotations must be a map of strings")
    return annotations


class EpRequest(NamedTuple):
    """The EP settings one object asks for through annotations."""

    tensor_parallel_size: int
    all2all_backend: str | None = None
    eplb: bool | None = None
    eplb_config: str | None = None
    nodes: int | None = None
    tensor_parallel_asked: bool = False
    vllm_version: Version | None = None

def _bool(annotations: Mapping[str, object], key: str) -> bool | None:
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
    """The value for a message, at most 60 characters; costs the same for a value of any size."""
    text = json.dumps(value[:61]) if isinstance(value, str) else reprlib.repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


_TP_EXPECTED = 'a whole number of at least 1 that divides the GPU count, e.g. "2"'
_NODES_EXPECTED = f'the number of pods (nodes) per data-parallel group, a whole number from 1 to {_MAX_NODES}, e.g. "2"'


def _whole_number(annotations: Mapping[str, object], key: str, highest: int, expected: str) -> int:
    """The annotation `key` (present) as a whole number from 1 to `highest`; Denied saying `expected`.

    The text is checked before it is converted, so no value, however long, costs more than its length."""
    raw = annotations[key]
    text = raw.strip() if isinstance(raw, str) else ""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(highest)) or not 1 <= int(text) <= highest:
        raise Denied(f"annotation {key} is {_show(raw)}; it must be {expected}")
    return int(text)


def _json_depth(text: str) -> int:
    """The deepest nesting of `[` and `{` outside strings in JSON text (0 for a scalar); linear, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _check_json_size(key: str, raw: object, longest: int, deepest: int) -> None:
    """Denied when the JSON annotation `key` is longer than `longest` characters or nests deeper than `deepest`
    (checked before it is parsed, so no value costs more than its length)."""
    if not isinstance(raw, str):
        return
    if len(raw) > longest:
        raise Denied(f"annotation {key} is {len(raw):,} characters long, over the {longest:,} the webhook reads; "
                     f'write only the settings that differ from vLLM\'s defaults, e.g. {{"window_size": 1000}}')
    if _json_depth(raw) > deepest:
        raise Denied(f"annotation {key} nests objects and arrays deeper than {deepest} levels, the deepest the "
                     f'webhook reads; vLLM\'s EPLB settings are flat, e.g. {{"window_size": 1000}}')


def ep_enabled(annotations: Mapping[str, object]) -> bool | None:
    """True/False as written, None when the annotation is absent."""
    return _bool(annotations, ENABLED)


def read_ep_request(annotations: Mapping[str, object], options: Options) -> EpRequest:
    """Validate the optional annotations of an EP-enabled object."""
    tp = options.tensor_parallel_size
    if TENSOR_PARALLEL_SIZE in annotations:
        tp = _whole_number(annotations, TENSOR_PARALLEL_SIZE, 999_999, _TP_EXPECTED)

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
        _check_json_size(EPLB_CONFIG, raw, MAX_EPLB_CONFIG_LENGTH, MAX_EPLB_CONFIG_DEPTH)
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

    nodes = _whole_number(annotations, NODES, _MAX_NODES, _NODES_EXPECTED) if NODES in annotations else None

    version: Version | None = None
    if VLLM_VERSION in annotations:
        raw = annotations[VLLM_VERSION]
        version = parse_version(raw) if isinstance(raw, str) and len(raw) < 40 else None
        if version is None:
            raise Denied(f'annotation {VLLM_VERSION} is {_show(raw)}; it must be a vLLM release number, e.g. "0.11.2"')
    return EpRequest(tp, backend, _bool(annotations, EPLB), config, nodes, TENSOR_PARALLEL_SIZE in annotations, version)
