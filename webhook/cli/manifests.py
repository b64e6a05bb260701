"""A stream of manifests through the core, as `kustomize build | ep-webhook mutate -f -` sends it.

One or many YAML documents, a JSON object, or a `kind: List`: every
InferenceService and LLMInferenceService is decided by the engine, every other document passes
through unchanged and in order, and the ServingRuntimes and
ClusterServingRuntimes found in the stream (and given with `--runtimes`), else
KServe's shipped ones, resolve the runtime of objects that have no command; the
ResourceClaimTemplates in the stream (and given with `--resources`) decide GPUs claimed through DRA.
Reading text and
printing belong to the CLI; this module only turns documents into results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import jsonpatch

from webhook.admission.kinds import KINDS, mutate
from webhook.kserve.api import GROUP
from webhook.kserve.inferenceservice import KIND as INFERENCE_SERVICE
from webhook.kserve.servingruntime import RuntimeSpec, spec_from_object
from webhook.kserve.selection import Runtimes, for_namespace, resolve
from webhook.core.options import Options
from webhook.core.verdict import Verdict

Form = Literal["single", "multi", "list"]
DEFAULT_NAMESPACE = "default"
RUNTIME_KINDS = ("ServingRuntime", "ClusterServingRuntime")
RESOURCE_GROUP = "resource.k8s.io"
CLAIM_TEMPLATE_KIND = "ResourceClaimTemplate"


class StreamError(Exception):
    """The input is not a stream of Kubernetes objects."""


@dataclass(frozen=True)
class Documents:
    """The objects of a stream and the form they came in (so they go out the same way)."""

    form: Form
    items: tuple[dict[str, object], ...]
    envelope: dict[str, object] | None = None  # the List around `items`, when form is "list"


def documents(loaded: Sequence[object]) -> Documents:
    """The objects of parsed YAML documents; a single `kind: List` is opened."""
    docs = [d for d in loaded if d is not None]
    if not docs:
        raise StreamError("no documents in the input")
    for n, d in enumerate(docs, 1):
        if not isinstance(d, dict):
            raise StreamError(f"document {n} is a {type(d).__name__}, not a Kubernetes object")
        if not isinstance(d.get("kind"), str) or not isinstance(d.get("apiVersion"), str):
            raise StreamError(f"document {n} has no apiVersion and kind; it is not a Kubernetes object")
    objects: list[dict[str, object]] = [d for d in docs if isinstance(d, dict)]
    if len(objects) == 1 and _is_list(objects[0]):
        items = objects[0].get("items")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise StreamError("the List's items must be a list of objects")
        envelope = {k: v for k, v in objects[0].items() if k != "items"}
        return Documents("list", tuple(items), envelope)
    return Documents("single" if len(objects) == 1 else "multi", tuple(objects))


def _is_list(obj: dict[str, object]) -> bool:
    kind = obj.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and "items" in obj


def _group(obj: dict[str, object]) -> str:
    api_version = obj.get("apiVersion")
    return api_version.partition("/")[0] if isinstance(api_version, str) and "/" in api_version else ""


def is_kind(obj: dict[str, object], kinds: Sequence[str]) -> bool:
    """Whether the object is one of these serving.kserve.io kinds."""
    return _group(obj) == GROUP and obj.get("kind") in kinds


def namespace_of(obj: dict[str, object]) -> str:
    """metadata.namespace, or the namespace kubectl would use without one."""
    metadata = obj.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE


def name_of(obj: dict[str, object]) -> str:
    """metadata.name, or `?` when the object has none."""
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else "?"


def object_ref(obj: dict[str, object]) -> str:
    """`<Kind> <namespace>/<name>`, for messages."""
    return f"{obj.get('kind')} {namespace_of(obj)}/{name_of(obj)}"


def runtimes_in(objects: Sequence[dict[str, object]]) -> list[RuntimeSpec]:
    """The ServingRuntimes and ClusterServingRuntimes among the objects."""
    found = []
    for obj in objects:
        if is_kind(obj, RUNTIME_KINDS):
            spec = spec_from_object(str(obj["kind"]), obj)
            if spec is not None:
                if spec.kind == "ServingRuntime":
                    spec = replace(spec, namespace=namespace_of(obj))
                found.append(spec)
    return found


ClaimTemplates = dict[str, dict[str, dict[str, object]]]
"""ResourceClaimTemplates by namespace, then name."""


def claim_templates_in(objects: Sequence[dict[str, object]]) -> ClaimTemplates:
    """The ResourceClaimTemplates (any resource.k8s.io version) among the objects, by namespace and name."""
    found: ClaimTemplates = {}
    for obj in objects:
        if _group(obj) == RESOURCE_GROUP and obj.get("kind") == CLAIM_TEMPLATE_KIND:
            found.setdefault(namespace_of(obj), {})[name_of(obj)] = obj
    return found


def llm_configs_in(objects: Sequence[dict[str, object]]) -> ClaimTemplates:
    """The LLMInferenceServiceConfigs among the objects, by namespace and name (a stream holds the presets of its
    namespaces; those not in it are taken as the platform's)."""
    found: ClaimTemplates = {}
    for obj in objects:
        if is_kind(obj, ("LLMInferenceServiceConfig",)):
            found.setdefault(namespace_of(obj), {})[name_of(obj)] = obj
    return found


@dataclass(frozen=True)
class Decided:
    """One document after the engine: the object to print, and what the engine said of it."""

    obj: dict[str, object]
    ref: str
    mutated: bool
    patch: tuple[dict[str, object], ...] = ()
    warnings: tuple[str, ...] = ()
    denial: str | None = None


def decide(
    docs: Documents,
    options_for: Callable[[dict[str, object]], Options],
    extra_runtimes: Sequence[RuntimeSpec] = (),
    default_runtimes: Sequence[RuntimeSpec] = (),
    default_note: str = "",
    extra_objects: Sequence[dict[str, object]] = (),
) -> list[Decided]:
    """Run the engine on every InferenceService and LLMInferenceService; other documents pass as they are.

    Runtime resolution uses the runtimes in the stream and `extra_runtimes`; when there are none it
    uses `default_runtimes` (KServe's shipped ones, `webhook.kserve.shipped`), and each InferenceService
    whose runtime is one of them and that the engine changed, warned about or denied gets `default_note`
    among its warnings; with none at all it is skipped (as the server does without a cluster).
    DRA claims are counted from the ResourceClaimTemplates in the stream and in `extra_objects`.
    """
    known = [*extra_runtimes, *runtimes_in(docs.items)]
    templates = claim_templates_in([*extra_objects, *docs.items])
    configs = llm_configs_in([*extra_objects, *docs.items])
    defaulted = not known and bool(default_runtimes)
    if defaulted:
        known = list(default_runtimes)
    out = []
    for obj in docs.items:
        if not is_kind(obj, KINDS):
            out.append(Decided(obj, object_ref(obj), False))
            continue
        runtimes = for_namespace(known, namespace_of(obj)) if known else None
        verdict = mutate(obj, options_for(obj), runtimes, templates.get(namespace_of(obj), {}),
                         configs.get(namespace_of(obj), {}))
        notes = (default_note,) if defaulted and _resolved(obj, verdict, runtimes) else ()
        if not verdict.allowed:
            out.append(Decided(obj, object_ref(obj), True, warnings=notes, denial=verdict.message))
            continue
        result = jsonpatch.apply_patch(obj, [dict(op) for op in verdict.patch]) if verdict.patch else obj
        out.append(Decided(result, object_ref(obj), True, verdict.patch, (*verdict.warnings, *notes)))
    return out


def _resolved(obj: dict[str, object], verdict: Verdict, runtimes: Runtimes | None) -> bool:
    """Whether the engine acted on an InferenceService whose runtime is among `runtimes`."""
    acted = bool(verdict.patch or verdict.warnings or not verdict.allowed)
    if not acted or runtimes is None or obj.get("kind") != INFERENCE_SERVICE:
        return False
    return resolve(obj, runtimes).runtime is not None
