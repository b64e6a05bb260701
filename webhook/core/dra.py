"""GPUs through Dynamic Resource Allocation: which devices a container's claims give it.

A container names claims in `resources.claims[]` (`name`, optionally one
`request` of that claim); the pod maps each name in `resourceClaims[]` to a
ResourceClaimTemplate (`resourceClaimTemplateName`: one claim per pod, made
from the template) or to an existing ResourceClaim (`resourceClaimName`,
shared). The template lists what is asked for in `spec.spec.devices.requests[]`.
Sources: k8s.io/api core/v1 `ResourceClaim`, `PodResourceClaim` and
resource/v1 `DeviceRequest`, `ExactDeviceRequest` (Kubernetes 1.34, where
resource.k8s.io/v1 is GA); resource/v1beta1 (1.32-1.33) has the same fields
flat on the request instead of under `exactly`.

Of a request only GPU device classes count (a claim may also ask for NICs);
`allocationMode: ExactCount` (the default) gives `count` devices (default 1).
What cannot be counted before the scheduler runs (`allocationMode: All`,
`firstAvailable` alternatives, a shared ResourceClaim, a template the webhook
has not seen) is a denial naming it, never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from webhook.base.errors import Denied, NotApplicable

DEFAULT_GPU_DEVICE_CLASSES: tuple[str, ...] = ("gpu.nvidia.com", "gpu.amd.com", "gpu.intel.com")
"""DeviceClasses whose devices are whole GPUs: those of NVIDIA's (k8s-dra-driver-gpu), AMD's and Intel's DRA drivers."""
MIG_DEVICE_CLASSES: tuple[str, ...] = ("mig.nvidia.com",)
"""DeviceClasses of GPU slices (NVIDIA MIG, k8s-dra-driver-gpu), which cannot form a data-parallel group."""
MAX_REQUESTS = 32
"""Requests of one claim the webhook reads (Kubernetes 1.34 allows 32: `DeviceRequestsMaxSize`)."""


class ClaimUse(NamedTuple):
    """One DRA claim a container uses, resolved through its pod.

    `name` and `request` are the container's `resources.claims[]` entry;
    `where` names the pod's `resourceClaims[]` entry for messages; `template`
    is the ResourceClaimTemplate object it names (None: not known);
    `problem` says why the devices cannot be known at admission, if so.
    """

    name: str
    request: str | None
    where: str
    template_name: str | None = None
    template: Mapping[str, object] | None = None
    problem: str | None = None


Templates = Mapping[str, Mapping[str, object]]
"""ResourceClaimTemplates of one namespace by name (resource.k8s.io v1, v1beta2 or v1beta1 objects)."""


def claim_uses(
    container: Mapping[str, object], pod: Mapping[str, object], container_where: str, pod_where: str,
    templates: Templates | None,
) -> tuple[ClaimUse, ...]:
    """The claims `container` uses in `pod` (pod spec fields; `..._where` are their paths for messages).

    `templates` are the ResourceClaimTemplates of the object's namespace (None:
    unknown, so every template-backed claim is unknown too). Raises Denied for
    malformed fields.
    """
    resources = container.get("resources")
    raw = resources.get("claims") if isinstance(resources, dict) else None
    if raw is None:
        return ()
    where = f"{container_where}.resources.claims"
    if not isinstance(raw, list):
        raise Denied(f"{where} must be a list of {{name, request}}")
    pod_claims = _pod_claims(pod.get("resourceClaims"), f"{pod_where}.resourceClaims")
    uses: list[ClaimUse] = []
    for i, entry in enumerate(raw):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise Denied(f"{where}[{i}] must have a name")
        request = entry.get("request") if isinstance(entry, dict) else None
        if request is not None and not isinstance(request, str):
            raise Denied(f"{where}[{i}].request must be a string")
        uses.append(_resolve(name, request or None, pod_claims, pod_where, templates))
    return tuple(uses)


def _pod_claims(value: object, where: str) -> dict[str, tuple[int, dict[str, object]]]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise Denied(f"{where} must be a list of {{name, resourceClaimTemplateName}}")
    found: dict[str, tuple[int, dict[str, object]]] = {}
    for i, entry in enumerate(value):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            found.setdefault(str(entry["name"]), (i, entry))
    return found


def _resolve(
    name: str, request: str | None, pod_claims: Mapping[str, tuple[int, dict[str, object]]], pod_where: str,
    templates: Templates | None,
) -> ClaimUse:
    if name not in pod_claims:
        return ClaimUse(name, request, f"{pod_where}.resourceClaims", problem=(
            f"the container uses claim {name!r}, which {pod_where}.resourceClaims does not define: add "
            f"{{name: {name}, resourceClaimTemplateName: ...}}"
        ))
    i, entry = pod_claims[name]
    where = f"{pod_where}.resourceClaims[{i}]"
    template_name = entry.get("resourceClaimTemplateName")
    if entry.get("resourceClaimName") is not None:
        return ClaimUse(name, request, where, problem=(
            f"{where} names a shared ResourceClaim, whose devices the webhook does not read; use "
            f"resourceClaimTemplateName, or device-plugin GPUs in resources.limits"
        ))
    if not isinstance(template_name, str) or not template_name:
        return ClaimUse(name, request, where, problem=f"{where} must set resourceClaimTemplateName")
    template = templates.get(template_name) if templates is not None else None
    if template is None:
        return ClaimUse(name, request, where, template_name, problem=(
            f"ResourceClaimTemplate {template_name!r} ({where}) is not known to the webhook: create it in the "
            f"object's namespace first (offline: pass it in the stream or with --resources)"
        ))
    return ClaimUse(name, request, where, template_name, template)


class Devices(NamedTuple):
    """What a container's claims give it: whole GPUs per device class, and GPU slices."""

    gpus: Mapping[str, int]
    slices: int


NO_DEVICES = Devices(MappingProxyType({}), 0)
"""What a container without claims gets."""


def count(uses: tuple[ClaimUse, ...], gpu_classes: tuple[str, ...]) -> Devices:
    """The GPUs (by device class) and GPU slices the claims give; Denied when they cannot be known."""
    gpus: dict[str, int] = {}
    slices = 0
    seen: set[tuple[str, str | None]] = set()
    for use in uses:
        if (use.name, use.request) in seen or (use.name, None) in seen:
            continue  # the same devices named twice are still the same devices
        seen.add((use.name, use.request))
        if use.problem is not None or use.template is None:
            raise Denied(use.problem or f"{use.where}: the claim's devices are not known")
        label = f"ResourceClaimTemplate {use.template_name}"
        for request_name, device_class, amount in _requests(use.template, label, use.request):
            if device_class in MIG_DEVICE_CLASSES:
                slices += 1 if amount is None else amount
                continue
            if device_class not in gpu_classes:
                continue  # NICs and other devices
            if amount is None:
                raise NotApplicable(
                    f"{label} request {request_name!r} asks for all devices of class {device_class} "
                    f"(allocationMode: All), a number known only at scheduling; set allocationMode: ExactCount "
                    f"and count"
                )
            gpus[device_class] = gpus.get(device_class, 0) + amount
    return Devices(gpus, slices)


def requests_of(template: Mapping[str, object], only: str | None = None) -> list[tuple[str, str, int | None]]:
    """(request name, device class, count or None for All) of a template's requests; [] when unreadable."""
    try:
        return _requests(template, "", only)
    except Denied:
        return []


def _requests(
    template: Mapping[str, object], label: str, only: str | None
) -> list[tuple[str, str, int | None]]:
    """(request name, device class, count or None for All) of the template's requests (`only`: that one)."""
    spec = template.get("spec")
    claim = spec.get("spec") if isinstance(spec, dict) else None
    devices = claim.get("devices") if isinstance(claim, dict) else None
    requests = devices.get("requests") if isinstance(devices, dict) else None
    if requests is None:
        return []
    if not isinstance(requests, list) or len(requests) > MAX_REQUESTS:
        raise Denied(f"{label}: spec.spec.devices.requests must be a list of at most {MAX_REQUESTS} requests")
    out: list[tuple[str, str, int | None]] = []
    for i, request in enumerate(requests):
        if not isinstance(request, dict):
            raise Denied(f"{label}: spec.spec.devices.requests[{i}] must be an object")
        name = str(request.get("name", i))
        if only is not None and name != only:
            continue
        if request.get("firstAvailable") is not None:
            raise NotApplicable(
                f"{label} request {name!r} uses firstAvailable, so which devices (and how many) the pod gets is "
                f"decided at scheduling; use exactly with a deviceClassName and count"
            )
        exact = request.get("exactly", request)  # v1 and v1beta2 nest it; v1beta1 has it flat
        if not isinstance(exact, dict):
            raise Denied(f"{label}: spec.spec.devices.requests[{i}].exactly must be an object")
        device_class = exact.get("deviceClassName")
        if not isinstance(device_class, str):
            continue
        mode = exact.get("allocationMode", "ExactCount")
        if mode == "All":
            out.append((name, device_class, None))
            continue
        amount = exact.get("count", 1)
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= 10_000:
            raise Denied(f"{label}: request {name!r} has count {amount!r}; write a whole number of devices")
        out.append((name, device_class, amount))
    if only is not None and not out and not any(isinstance(r, dict) and r.get("name") == only for r in requests):
        raise Denied(f"{label} has no request named {only!r}, which the container's resources.claims names")
    return out
