"""The kinds the webhook decides, wired to the core: one adapter per kind.

The core (`webhook.core.engine`) decides on any object an adapter can read;
this module says which adapter reads which KServe kind. An object of another
kind (or none) is read as an InferenceService, whose adapter then says what
it misses. A third kind is one adapter module in `webhook.kserve` and one
entry here.
"""

from __future__ import annotations

from collections.abc import Mapping

from webhook.core import engine
from webhook.core.options import Options
from webhook.core.verdict import Verdict
from webhook.core.workload import Adapter
from webhook.kserve import inferenceservice, llminferenceservice
from webhook.core.dra import Templates
from webhook.kserve.selection import Runtimes
from webhook.kserve.view import UNKNOWN, NamespaceView

ADAPTERS: dict[str, Adapter[NamespaceView]] = {
    inferenceservice.KIND: inferenceservice.read,
    llminferenceservice.KIND: llminferenceservice.read,
}
"""The adapter of each kind, by the object's `kind`."""
KINDS = tuple(ADAPTERS)
"""The kinds the webhook decides: InferenceService, LLMInferenceService."""


def adapter_for(obj: object) -> Adapter[NamespaceView]:
    """The adapter that reads `obj` (by its `kind`; an InferenceService's for anything else)."""
    kind = obj.get("kind") if isinstance(obj, dict) else None
    return ADAPTERS.get(str(kind), inferenceservice.read)


def mutate(
    obj: object, options: Options | None = None, runtimes: Runtimes | None = None,
    claim_templates: Templates | None = None,
    llm_configs: Mapping[str, Mapping[str, object]] | None = None,
) -> Verdict:
    """Decide on one InferenceService or LLMInferenceService: allow, allow with a patch, or deny.

    `runtimes` are the ServingRuntimes of the object's namespace and the
    ClusterServingRuntimes; with them, the runtime KServe will run for an
    object without a command is resolved as KServe resolves it (see
    `webhook.kserve.selection`). Without them (None) that runtime is not checked.
    `claim_templates` are the ResourceClaimTemplates of the object's namespace
    by name (None: unknown), which decide how many GPUs DRA claims give;
    `llm_configs` its LLMInferenceServiceConfigs by name (None: unknown).
    Never raises: a problem with the object is a denial.
    """
    view = UNKNOWN if runtimes is None and claim_templates is None and llm_configs is None \
        else NamespaceView(runtimes, claim_templates, llm_configs)
    return decide(obj, options or Options(), view)


def decide(obj: object, options: Options, view: NamespaceView) -> Verdict:
    """`mutate` with the namespace's objects as one view (how the server calls it: see `admit`)."""
    return engine.mutate(obj, adapter_for(obj), options, view)



def running_ep(obj: object) -> bool:
    """Whether the object runs EP as it is now (see `engine.running_ep`)."""
    return engine.running_ep(obj, adapter_for(obj))
