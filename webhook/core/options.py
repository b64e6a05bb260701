"""What the platform sets: the engine's cluster-side options (a policy picks them per namespace)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from webhook.vllm.flags import ALL2ALL_BACKENDS
from webhook.vllm.releases import Version
from webhook.core.dra import DEFAULT_GPU_DEVICE_CLASSES
from webhook.core.gpus import DEFAULT_GPU_RESOURCES

OnConflict = Literal["override", "reject"]
"""Hand-written flags or fields that disagree: fix them (override) or deny (reject)."""
Mode = Literal["optIn", "enforce", "forbid"]
"""optIn: EP where annotated; enforce: EP wherever it applies; forbid: no EP at all."""
ON_CONFLICT: tuple[OnConflict, ...] = get_args(OnConflict)
"""The values of `OnConflict`, for validation and command-line choices."""
MODES: tuple[Mode, ...] = get_args(Mode)
"""The values of `Mode`, for validation and messages."""


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
    gpu_device_classes: tuple[str, ...] = DEFAULT_GPU_DEVICE_CLASSES
    """DRA DeviceClasses whose devices count as GPUs (a claim's other devices, e.g. NICs, do not)."""
    all2all_backends: tuple[str, ...] = ALL2ALL_BACKENDS
    max_data_parallel_size: int | None = None
    vllm_version: Version | None = None
    """The vLLM release to write for when neither `ep.vllm-version` nor the image says (None: the newest known)."""
