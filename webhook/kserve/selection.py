"""Which ServingRuntime KServe will run for an InferenceService.

This follows KServe v0.20's controller exactly, so that the webhook edits the
args of the runtime that will really start:

- `spec.predictor.model.runtime` set: a ServingRuntime of that name in the
  object's namespace, else a ClusterServingRuntime of that name
  (`isvcutils.GetServingRuntime` in
  pkg/controller/v1beta1/inferenceservice/utils/utils.go).
- otherwise auto-selection (`ModelSpec.GetSupportingRuntimes` in
  pkg/apis/serving/v1beta1/predictor_model.go, first result taken by
  pkg/controller/v1beta1/inferenceservice/components/predictor.go):
  runtimes that are not disabled, not multi-model, multi-node exactly when the
  predictor has a `workerSpec`, that list the model format with
  `autoSelect: true` (name, or `name:version` when the object gives a
  version), and that support the object's `protocolVersion` (KServe assumes
  v1 when it is absent; a runtime listing no protocol versions supports
  every one). Each scope is first ordered by its lowest protocol version,
  then newest `creationTimestamp` first, then name; then by the model
  format's `priority`, highest first, a runtime with a priority before one
  without, ties keeping that order. Namespaced runtimes come before all
  ClusterServingRuntimes, whatever their priorities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from webhook.kserve.servingruntime import RuntimeSpec

# constants.GetProtocolVersionInt: v1 < v2 < grpc-v1 < grpc-v2; anything else unknown (last)
_PROTOCOL_ORDER = {"v1": 0, "v2": 1, "grpc-v1": 2, "grpc-v2": 3}
_UNKNOWN_PROTOCOL = 4
DEFAULT_PROTOCOL = "v1"


@dataclass(frozen=True)
class Runtimes:
    """The runtimes KServe could use for one object: its namespace's, then the cluster's."""

    namespaced: tuple[RuntimeSpec, ...] = ()
    cluster: tuple[RuntimeSpec, ...] = ()


def for_namespace(known: Sequence[RuntimeSpec], namespace: str) -> Runtimes:
    """What KServe could choose from for an object in `namespace`: that namespace's
    ServingRuntimes among `known` (by `RuntimeSpec.namespace`), and every ClusterServingRuntime."""
    return Runtimes(
        tuple(r for r in known if r.kind == "ServingRuntime" and r.namespace == namespace),
        tuple(r for r in known if r.kind == "ClusterServingRuntime"),
    )


class Model(NamedTuple):
    """What selection reads of `spec.predictor` (all None when absent); a named tuple, made per review."""

    runtime: str | None
    format_name: str | None
    format_version: str | None
    protocol_version: str | None
    multi_node: bool


def read_model(obj: object) -> Model:
    """The selection inputs of an InferenceService; tolerant of odd shapes (they select nothing)."""
    spec = obj.get("spec") if isinstance(obj, dict) else None
    predictor = spec.get("predictor") if isinstance(spec, dict) else None
    predictor = predictor if isinstance(predictor, dict) else {}
    model = predictor.get("model")
    model = model if isinstance(model, dict) else {}
    model_format = model.get("modelFormat")
    model_format = model_format if isinstance(model_format, dict) else {}

    def text(v: object) -> str | None:
        return v if isinstance(v, str) and v else None

    return Model(
        text(model.get("runtime")),
        text(model_format.get("name")),
        text(model_format.get("version")),
        text(model.get("protocolVersion")),
        predictor.get("workerSpec") is not None,
    )


def named(name: str, runtimes: Runtimes) -> RuntimeSpec | None:
    """The runtime a name refers to: the namespace's ServingRuntime first, then the cluster's."""
    for candidate in (*runtimes.namespaced, *runtimes.cluster):
        if candidate.name == name:
            return candidate
    return None


def _protocol_rank(runtime: RuntimeSpec) -> int:
    if not runtime.protocol_versions:
        return _UNKNOWN_PROTOCOL
    return min(_PROTOCOL_ORDER.get(p, _UNKNOWN_PROTOCOL) for p in runtime.protocol_versions)


def _supports(runtime: RuntimeSpec, model: Model) -> bool:
    labels = set()
    for f in runtime.formats:
        if f.auto_select:
            labels.add(f.name)
            if f.version is not None:
                labels.add(f"{f.name}:{f.version}")
    wanted = model.format_name if model.format_version is None else f"{model.format_name}:{model.format_version}"
    protocol = model.protocol_version or DEFAULT_PROTOCOL
    return (
        not runtime.disabled
        and not runtime.multi_model
        and runtime.multi_node == model.multi_node
        and wanted in labels
        and (not runtime.protocol_versions or protocol in runtime.protocol_versions)
    )


def _priority(runtime: RuntimeSpec, format_name: str) -> int | None:
    # ServingRuntimeSpec.GetPriority: the first entry with that name, autoSelect or not
    for f in runtime.formats:
        if f.name == format_name:
            return f.priority
    return None


def _ordered(scope: tuple[RuntimeSpec, ...], model: Model) -> list[RuntimeSpec]:
    by_name = sorted(scope, key=lambda r: r.name)
    by_age = sorted(by_name, key=lambda r: r.created, reverse=True)  # newest first, stable
    by_protocol = sorted(by_age, key=_protocol_rank)
    chosen = [r for r in by_protocol if _supports(r, model)]
    name = model.format_name or ""
    return sorted(chosen, key=lambda r: (0, -p) if (p := _priority(r, name)) is not None else (1, 0))


def auto_select(model: Model, runtimes: Runtimes) -> RuntimeSpec | None:
    """The runtime KServe picks for a model format, or None when none supports it."""
    if model.format_name is None:
        return None
    candidates = _ordered(runtimes.namespaced, model) + _ordered(runtimes.cluster, model)
    return candidates[0] if candidates else None


class Resolution(NamedTuple):
    """The runtime KServe will run (None: unknown) and how it was found, for messages; a named tuple, made per
    review."""

    runtime: RuntimeSpec | None
    how: str


def resolve(obj: object, runtimes: Runtimes) -> Resolution:
    """The runtime an InferenceService without a command will run."""
    model = read_model(obj)
    if model.runtime is not None:
        found = named(model.runtime, runtimes)
        return Resolution(found, f"runtime {model.runtime!r}" + ("" if found else " is unknown"))
    found = auto_select(model, runtimes)
    if found is not None:
        return Resolution(found, f"auto-selected {found.kind} {found.name} for modelFormat {model.format_name!r}")
    if model.format_name is None:
        return Resolution(None, "no runtime is named and no modelFormat is given")
    return Resolution(None, f"no known runtime auto-selects modelFormat {model.format_name!r}")
