"""Which admission requests the engine sees, and how each answer is counted."""

from __future__ import annotations

from collections.abc import Callable

from webhook.admission.kinds import KINDS, decide
from webhook.kserve.api import GROUP
from webhook.kserve.view import UNKNOWN, NamespaceView
from webhook.core.policy import LabelsUnknown
from webhook.admission.review import AdmissionRequest
from webhook.core.options import Options
from webhook.core.verdict import Verdict

DECIDED_OPERATIONS = frozenset({"CREATE", "UPDATE"})
"""The operations the engine decides (the webhook configurations register exactly these)."""


def admit(
    request: AdmissionRequest,
    options_for: Callable[[str], Options],
    view_for: Callable[[str], NamespaceView] | None = None,
) -> Verdict:
    """Run the engine on InferenceService and LLMInferenceService creates and updates; allow the rest.

    `options_for(namespace)` applies the policy; `view_for(namespace)` gives what the adapters may read besides
    the object (`NamespaceView`: the runtimes KServe could use there, its ResourceClaimTemplates and
    LLMInferenceServiceConfigs, how an image's vLLM release is found); None: none of them is known. Dry-run
    requests are treated like any other: the webhook has no side effects.
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
    return decide(request.object, options, view_for(request.namespace) if view_for else UNKNOWN)


def outcome(verdict: Verdict) -> str:
    """The metric and log label for a verdict: denied, mutated or unchanged."""
    if not verdict.allowed:
        return "denied"
    return "mutated" if verdict.patch_json else "unchanged"  # the wire text: no decoding per review
