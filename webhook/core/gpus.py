"""How many GPUs a container asks for.

The data-parallel size must equal the GPUs the pod really gets, so anything
ambiguous (limits and requests that disagree, two GPU kinds, a fraction) is a
denial rather than a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from webhook.base.errors import Denied, NotApplicable

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
    if value.isascii() and value.isdigit():  # the usual "8": skip the general parser
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


def _gpu_entries(section: object, where: str, keys: Sequence[str]) -> dict[str, object]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise Denied(f"{where} must be a map of resource names to quantities")
    return {k: section[k] for k in keys if k in section}


def count_gpus(resources: object, path: str, keys: Sequence[str] = DEFAULT_GPU_RESOURCES) -> int:
    """The GPU count of one container; raises Denied when it is not clear."""
    if resources is None:
        resources = {}
    if not isinstance(resources, dict):
        raise Denied(f"{path}.resources must be a map with limits and requests")
    limits = _gpu_entries(resources.get("limits"), f"{path}.resources.limits", keys)
    requests = _gpu_entries(resources.get("requests"), f"{path}.resources.requests", keys)
    kinds = sorted(set(limits) | set(requests))
    if not kinds:
        raise NotApplicable(
            f"expert parallelism needs GPUs, but {path}.resources sets none of {', '.join(keys)}; "
            f"set resources.limits, e.g. nvidia.com/gpu: \"8\""
        )
    if len(kinds) > 1:
        raise NotApplicable(
            f"{path}.resources asks for two kinds of GPU ({', '.join(kinds)}); "
            f"expert parallelism runs on one kind: keep only one"
        )
    key = kinds[0]
    counted: dict[str, Fraction | int] = {}
    for section, entries in (("limits", limits), ("requests", requests)):
        if key in entries:
            raw = entries[key]
            field = f"{path}.resources.{section}[{key}]"
            q = parse_quantity(raw, field)
            if q is None:
                raise Denied(f"{field} is {raw!r}, which is not a quantity; write a whole number such as \"8\"")
            if q.denominator != 1:
                raise NotApplicable(f"{field} is {raw!r}, a fraction of a GPU; expert parallelism needs whole GPUs")
            counted[section] = q
    if "limits" in counted and "requests" in counted and counted["limits"] != counted["requests"]:
        raise NotApplicable(
            f"{path}.resources.limits[{key}] is {limits[key]!r} but requests[{key}] is {requests[key]!r}; "
            f"GPUs cannot be overcommitted: make them equal or drop the request"
        )
    section = "limits" if "limits" in counted else "requests"
    count = int(counted[section])
    raw = (limits if section == "limits" else requests)[key]
    if count < 2:
        raise NotApplicable(
            f"{path}.resources.{section}[{key}] is {raw!r}; expert parallelism needs at least 2 GPUs "
            f"in the pod: raise the GPU limit or remove the ep.enabled annotation"
        )
    return count
