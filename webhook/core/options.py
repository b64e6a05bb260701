"""What the platform sets: the engine's cluster-side options (a policy picks them per namespace)."""

from __future__ import annotations

import fnmatch
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
Unknown = Literal["deny", "warn"]
"""What forbid and enforce (without opt-out) do when the webhook cannot tell whether vLLM runs EP."""
UNKNOWN: tuple[Unknown, ...] = get_args(Unknown)
"""The values of `Mode`, for validation and messages."""
SharedMemoryMode = Literal["add", "warn", "off"]
"""A pod running TP x DP > 1 without a memory-backed /dev/shm: add one, warn, or say nothing (`webhook.core.shm`)."""
SHARED_MEMORY_MODES: tuple[SharedMemoryMode, ...] = get_args(SharedMemoryMode)
"""The values of `SharedMemoryMode`, for validation and messages."""
DEFAULT_SHARED_MEMORY_SIZE = "8Gi"
"""The /dev/shm size the webhook gives: KServe's multi-node data-parallel presets mount 8Gi
(config/llmisvcconfig/config-llm-worker-data-parallel.yaml, KServe v0.20)."""


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
    unknown_launches: Unknown = "deny"
    """forbid / enforce: a launch whose EP the webhook cannot read (a value set at run time, a file, a preset by
    reference) is denied (fail closed, the default) or only warned about (for teams that accept the risk)."""
    vllm_version: Version | None = None
    """The vLLM release to write for when neither `ep.vllm-version` nor the image says (None: the newest known)."""
    vllm_version_overrides: bool = False
    """`vllm_version` is the release of every object, over `ep.vllm-version` and the image: the upgrade-readiness
    audit (`ep-webhook audit --vllm-version`) judges objects as if their runtime moved to it. Never from a policy."""
    shared_memory: SharedMemoryMode = "add"
    shared_memory_size: str = DEFAULT_SHARED_MEMORY_SIZE
    """A Kubernetes quantity (validated by the policy): the sizeLimit of the /dev/shm volume the webhook adds or raises."""
    models: tuple[str, ...] | None = None
    """In enforce mode, the models EP is enforced for: globs matched, ignoring case, against the names a workload
    gives its model (`Workload.models`, and those its vLLM launches name); None: every model. An object whose
    model matches none is treated as in optIn mode."""

    def enforces(self, names: tuple[str, ...]) -> bool:
        """Whether a model known by `names` is one EP is enforced for (`models`); True when no globs are set."""
        if self.models is None:
            return True
        return any(fnmatch.fnmatchcase(n.lower(), g.lower()) for n in names for g in self.models)
