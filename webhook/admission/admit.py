"""Which admission requests the engine sees, and how each answer is counted."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from webhook.admission.kinds import KINDS, mutate
from webhook.kserve.api import GROUP
from webhook.kserve.images import ReleaseOf
from webhook.core.policy import LabelsUnknown
from webhook.admission.review import AdmissionRequest
from webhook.kserve.selection import Runtimes
from webhook.core.dra import Templates
from webhook.core.options import Options
from webhook.core.verdict import Verdict

DECIDED_OPERATIONS = frozenset({"CREATE", "UPDATE"})
"""The operations the engine decides (the webhook configurations register exactly these)."""


def admit(
    request: AdmissionRequest,
    options_for: Callable[[str], Options],
    runtimes_for: Callable[[str], Runtimes] | None = None,
    templates_for: Callable[[str], Templates] | None = None,
    configs_for: Callable[[str], Mapping[str, Mapping[str, object]]] | None = None,
    release_of: ReleaseOf | None = None,
) -> Verdict:
    """Run the engine on InferenceService and LLMInferenceService creates and updates; allow the rest.

    `options_for(namespace)` applies the policy; `runtimes_for(namespace)` gives the
    runtimes KServe could use there; `templates_for(namespace)` its ResourceClaimTemplates by name; `configs_for(namespace)` its LLMInferenceServiceConfigs;
    `release_of` finds an image's vLLM release (the server's memo; None: read each time). Dry-run requests are treated like any other: the webhook has no
    side effects.
    """
    if request.kind.group != GROUP or request.kind.kind not in KINDS or request.operation not in DECIDED_OPERATIONS:
        return Verdict.allow()
    try:
        options = options_for(request.namespace)
    except LabelsUnknown:
        return Verdict.deny(
            f"the webhook's policy depends on the labels of namespace {request.namespace!r}, which it does not "
            f"know yet (it may not reach the API server); retry in a few seconds"
        )
    return mutate(request.object, options, runtimes_for(request.namespace) if runtimes_for else None,
                  templates_for(request.namespace) if templates_for else None,
                  configs_for(request.namespace) if configs_for else None, release_of)


def outcome(verdict: Verdict) -> str:
    """The metric and log label for a verdict: denied, mutated or unchanged."""
    if not verdict.allowed:
        return "denied"
    return "mutated" if verdict.patch_json else "unchanged"  # the wire text: no decoding per review
