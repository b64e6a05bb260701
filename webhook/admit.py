"""Which admission requests the engine sees, and how each answer is counted."""

from __future__ import annotations

from webhook.engine import API_GROUP, KIND, mutate
from webhook.review import AdmissionRequest
from webhook.settings import Options
from webhook.verdict import Verdict

OPERATIONS = ("CREATE", "UPDATE")


def admit(request: AdmissionRequest, options: Options) -> Verdict:
    """Run the engine on InferenceService creates and updates; allow the rest untouched.

    Dry-run requests are treated like any other: the webhook has no side effects.
    """
    if request.kind.group != API_GROUP or request.kind.kind != KIND or request.operation not in OPERATIONS:
        return Verdict.allow()
    return mutate(request.object, options)


def outcome(verdict: Verdict) -> str:
    if not verdict.allowed:
        return "denied"
    return "mutated" if verdict.patch else "unchanged"
