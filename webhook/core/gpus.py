"""How many GPUs a container's vLLM sees.

The data-parallel size must equal the GPUs the pod really gets, so anything
ambiguous (limits and requests that disagree, two GPU kinds, a fraction, GPUs
from both a device plugin and DRA, MIG slices, an env that hides some) is a
denial rather than a guess. Sources, in order: device-plugin resources in the
container's limits/requests; its DRA claims (`dra`); then the visible-devices
env must agree with the count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import NamedTuple

from webhook.base.errors import Denied, NotApplicable
from webhook.core import dra
from webhook.core.dra import DEFAULT_GPU_DEVICE_CLASSES, ClaimUse

DEFAULT_GPU_RESOURCES: tuple[str, ...] = (
    "nvidia.com/gpu",
    "amd.com/gpu",
    "intel.com/gpu",
    "habana.ai/gaudi",
    "nvidia.com/gpualloc",
)

MAX_QUANTITY_LENGTH = 64
"""The longest quantity text the webhook reads, in characters.

Kubernetes' Quantity type says "no quantity may represent a number greater
than 2^63-1 in magnitude, nor may it have more than 3 decimal places"
(apimachinery `pkg/api/resource/quantity.go`, the Quantity doc comment, as
in Kubernetes v1.31): about 20 digits and a suffix; longer text is no GPU count, and
converting thousands of digits is slow or refused by Python (its 4,300-digit
limit on int() of a string)."""

_QUANTITY = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}


LARGEST_QUANTITY = 2**63 - 1
"""The largest value of a Kubernetes quantity (the doc comment quoted above); a GPU count beyond it is refused."""


def parse_quantity(value: object, where: str = "a GPU quantity") -> Fraction | int | None:
    """A Kubernetes quantity ("8", 8, "8000m", "1e1") as an exact number (whole ones as int).

    None when `value` is no quantity; Denied when its text is longer than `MAX_QUANTITY_LENGTH` (checked
    before any conversion, so no text costs more than its length), when it is a list or a map, or when its
    value is beyond `LARGEST_QUANTITY`; those messages name `where` and show a cut value, whatever its size."""
    if isinstance(value, str) and len(value) <= 18 and value.isascii() and value.isdigit():
        return int(value)  # the usual "8": below 10^18, so within the largest quantity
    if isinstance(value, (list, dict)):
        raise Denied(f"{where} is a {type(value).__name__}; write the GPU count as a whole number such as \"8\"")
    if isinstance(value, str) and len(value) > MAX_QUANTITY_LENGTH:
        raise Denied(
            f"{where} is {len(value):,} characters long ({value[:12]!r}…), longer than the "
            f"{MAX_QUANTITY_LENGTH} the webhook reads; write the GPU count as a whole number such as \"8\""
        )
    number = _number(value)
    if number is not None and not -LARGEST_QUANTITY <= number <= LARGEST_QUANTITY:
        if isinstance(value, int) and abs(value) >= 10**30:  # str() of thousands of digits is refused by Python
            shown = f"about 2^{abs(value).bit_length() - 1}"
        else:
            shown = repr(value)
        raise Denied(
            f"{where} is {shown}, larger than 2^63-1 in magnitude, the largest Kubernetes quantity; "
            f"write the GPU count as a whole number such as \"8\""
        )
    return number


def _number(value: object) -> Fraction | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return Fraction(value) if value == value and abs(value) != float("inf") else None
    if not isinstance(value, str):
        return None
    if value.isascii() and value.isdigit():  # whole numbers: skip the general parser
        return int(value)
    m = _QUANTITY.fullmatch(value.strip())
    if m is None:
        return None
    number = Fraction(m.group(1))
    suffix = m.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    if suffix:
        exponent = int(suffix[1:])
        if abs(exponent) > 30:
            return None
        return number * Fraction(10) ** exponent
    return number


VISIBLE_DEVICES_ENV: tuple[str, ...] = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")
"""Env that hides GPUs of the pod from vLLM: each lists the devices the process may use, comma-separated
(vLLM reads them through torch and its platform's `device_control_env_var`, vllm/platforms/cuda.py and rocm.py)."""
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
"""Device-plugin names of NVIDIA MIG slices under the "mixed" strategy (`nvidia.com/mig-3g.40gb`: k8s-device-plugin)."""


class Gpus(NamedTuple):
    """Everything that says how many GPUs one container's vLLM sees.

    `resources` as written (device-plugin quantities in limits/requests); `claims`:
    its DRA claims (see `dra`); `visible`: its env that limits the visible devices,
    as (name, literal value, or None when the value is only known at run time).
    `where` names the container for messages.
    """

    where: str
    resources: object = None
    claims: tuple[ClaimUse, ...] = ()
    visible: tuple[tuple[str, str | None], ...] = ()


def watched_env(container: Mapping[str, object], names: frozenset[str] | None) -> dict[str, str | None]:
    """The container's env entries named in `names` (None: every one), in one pass: the literal value (an entry
    without `value` or `valueFrom` is the empty string, as in Kubernetes), or None when the value is known only at
    run time (`valueFrom`, or `$(VAR)` that Kubernetes expands); the last entry of a name wins, as in Kubernetes.
    `envFrom` sources are not read."""
    env = container.get("env")
    found: dict[str, str | None] = {}
    if not isinstance(env, list):
        return found
    for item in env:
        if isinstance(item, dict):
            name = item.get("name")
            if isinstance(name, str) and (names is None or name in names):
                value = item.get("value", "")
                found[name] = value if isinstance(value, str) and "valueFrom" not in item \
                    and "$(" not in value else None
    return found


def visible(env: dict[str, str | None]) -> tuple[tuple[str, str | None], ...]:
    """The `VISIBLE_DEVICES_ENV` entries of `watched_env`'s answer, for `Gpus.visible`."""
    return tuple((n, env[n]) for n in VISIBLE_DEVICES_ENV if n in env) if env else ()


def _gpu_entries(
    section: object, where: str, name: str, keys: Sequence[str]
) -> dict[str, tuple[object, Fraction | int | None]]:
    """The GPU keys of `resources.<name>`: raw value and quantity (None: not a quantity); zero quantities left
    out. `where` names the container; messages are built only when one is raised."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise Denied(f"{where}.resources.{name} must be a map of resource names to quantities")
    found = {}
    for k in [k for k in keys if k in section]:  # usually one: the comprehension tests the keys fastest
        raw = section[k]
        q = parse_quantity(raw, f"{where}.resources.{name}[{k}]")
        if q != 0:
            found[k] = (raw, q)
    return found


def count_gpus(
    gpus: Gpus, keys: Sequence[str] = DEFAULT_GPU_RESOURCES,
    device_classes: tuple[str, ...] = DEFAULT_GPU_DEVICE_CLASSES,
) -> int:
    """The GPUs one container's vLLM sees: device-plugin `keys` in its resources, else the GPU
    `device_classes` of its DRA claims; the visible-devices env must agree. Raises Denied when it is not clear,
    NotApplicable when there are not two whole GPUs."""
    resources = gpus.resources
    path = gpus.where
    if resources is None:
        resources = {}
    if not isinstance(resources, dict):
        raise Denied(f"{path}.resources must be a map with limits and requests")
    plugin = _plugin_gpus(resources, path, keys)
    devices = dra.count(gpus.claims, device_classes) if gpus.claims else dra.NO_DEVICES
    limits = resources.get("limits")
    slices = [] if not isinstance(limits, dict) else [
        k for k in limits
        if k.startswith(MIG_RESOURCE_PREFIX) and parse_quantity(limits[k], f"{path}.resources.limits[{k}]") != 0
    ]
    if slices or devices.slices:
        named = ", ".join(slices) if slices else ", ".join(dra.MIG_DEVICE_CLASSES)
        raise NotApplicable(
            f"{path} gets MIG slices ({named}); slices of GPUs cannot form a data-parallel group in one pod "
            f"(vLLM needs whole GPUs that talk over NCCL): request whole GPUs, e.g. nvidia.com/gpu"
        )
    if plugin is not None and devices.gpus:
        raise NotApplicable(
            f"{path} gets GPUs both from resources.{plugin[1]}[{plugin[2]}] = {plugin[3]!r} and from DRA claims "
            f"({', '.join(sorted(devices.gpus))}); use one of the two"
        )
    if len(devices.gpus) > 1:
        raise NotApplicable(
            f"{path}'s DRA claims ask for two kinds of GPU ({', '.join(sorted(devices.gpus))}); "
            f"expert parallelism runs on one kind: keep only one"
        )
    if plugin is not None:
        count, section, key, raw = plugin
        shown = f"resources.{section}[{key}] = {raw!r}" if count < 2 else ""
    elif devices.gpus:
        (device_class, count), = devices.gpus.items()
        shown = f"{count} {device_class} device(s) from its DRA claims"
    else:
        raise NotApplicable(
            f"expert parallelism needs GPUs, but {path} gets none: set resources.limits "
            f"(one of {', '.join(keys)}, e.g. nvidia.com/gpu: \"8\") or claim GPUs through DRA "
            f"(resources.claims with a ResourceClaimTemplate of a GPU device class: {', '.join(device_classes)})"
        )
    if count < 2:
        raise NotApplicable(
            f"expert parallelism needs at least 2 GPUs in the pod, but {path} gets {shown}: "
            f"raise the GPU limit or remove the ep.enabled annotation"
        )
    if gpus.visible:
        _check_visible(gpus.visible, count, path)
    return count


AMD_GPUS = frozenset({"amd.com/gpu", "gpu.amd.com"})
"""AMD's device-plugin resource and DRA DeviceClass (ROCm/k8s-device-plugin, ROCm/k8s-gpu-dra-driver)."""


def on_amd(gpus: Gpus) -> bool:
    """Whether the container's GPUs are AMD's (by device-plugin key or DRA DeviceClass); for backend checks,
    after `count_gpus` has accepted the GPUs."""
    resources = gpus.resources
    if isinstance(resources, dict):
        for section in (resources.get("limits"), resources.get("requests")):
            if isinstance(section, dict) and "amd.com/gpu" in section and parse_quantity(section["amd.com/gpu"]):
                return True
    for use in gpus.claims:
        if use.template is not None and any(c in AMD_GPUS for _, c, _ in dra.requests_of(use.template, use.request)):
            return True
    return False


def _check_visible(visible: tuple[tuple[str, str | None], ...], count: int, path: str) -> None:
    for name, value in visible:
        if value is None:
            raise Denied(
                f"{path} sets env {name} from a source read only at run time, so the webhook cannot know how many "
                f"of the pod's {count} GPUs vLLM sees; remove it (the pod sees only its own GPUs) or write it literally"
            )
        entries = [e for e in value.split(",") if e.strip()]
        if len(entries) != count or value.strip() in ("-1", "none", "void"):
            raise Denied(
                f"{path} sets env {name}={value!r}, so vLLM sees {len(entries)} of the pod's {count} GPUs and a "
                f"data-parallel group over all of them would not start; remove {name} (the pod sees only its "
                f"own GPUs) or request {len(entries)} GPUs"
            )


def _plugin_gpus(resources: dict[str, object], path: str, keys: Sequence[str]) -> tuple[int, str, str, object] | None:
    """The device-plugin GPU count and where it is written (section, key, raw value), or None when the container
    asks for none."""
    limits = _gpu_entries(resources.get("limits"), path, "limits", keys)
    requests = _gpu_entries(resources.get("requests"), path, "requests", keys)
    kinds = sorted(limits.keys() | requests.keys())
    if not kinds:
        return None
    if len(kinds) > 1:
        raise NotApplicable(
            f"{path}.resources asks for two kinds of GPU ({', '.join(kinds)}); "
            f"expert parallelism runs on one kind: keep only one"
        )
    key = kinds[0]
    counted: dict[str, Fraction | int] = {}
    for section, entries in (("limits", limits), ("requests", requests)):
        if key in entries:
            raw, q = entries[key]
            if q is None:
                raise Denied(f"{path}.resources.{section}[{key}] is {raw!r}, which is not a quantity; "
                             f"write a whole number such as \"8\"")
            if q.denominator != 1:
                raise NotApplicable(f"{path}.resources.{section}[{key}] is {raw!r}, a fraction of a GPU; "
                                    f"expert parallelism needs whole GPUs")
            counted[section] = q
    if "limits" in counted and "requests" in counted and counted["limits"] != counted["requests"]:
        raise NotApplicable(
            f"{path}.resources.limits[{key}] is {limits[key][0]!r} but requests[{key}] is {requests[key][0]!r}; "
            f"GPUs cannot be overcommitted: make them equal or drop the request"
        )
    section = "limits" if "limits" in counted else "requests"
    raw = (limits if section == "limits" else requests)[key][0]
    return int(counted[section]), section, key, raw
