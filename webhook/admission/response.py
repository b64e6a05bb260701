"""Building the AdmissionReview answer from a verdict: a pure function.

The request's uid is copied here and nowhere else, and the answer uses the
apiVersion the request came in. Each call builds new data: nothing in an
answer is shared with the verdict or with another answer.
"""

from __future__ import annotations

import base64

from webhook.core.verdict import Verdict


def build_response(api_version: str, uid: str, verdict: Verdict) -> dict[str, object]:
    """The AdmissionReview answering request `uid` with `verdict`, in `api_version`.

    Allowed: `patchType: JSONPatch` and the base64 patch when there is one, and
    `auditAnnotations.changed` naming the changed fields. Denied: code 403 with
    the verdict's message. Warnings in both cases.
    """
    response: dict[str, object] = {"uid": uid, "allowed": verdict.allowed}
    if verdict.allowed:
        if verdict.patch_json:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(verdict.patch_json).decode("ascii")
        if verdict.changed:
            response["auditAnnotations"] = {"changed": ",".join(verdict.changed)}
    else:
        response["status"] = {"status": "Failure", "code": 403, "reason": "Forbidden", "message": verdict.message}
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def errored(api_version: str, uid: str, code: int, message: str) -> dict[str, object]:
    """A failure of the webhook itself, reported as a verdict rather than an HTTP 500."""
    status = {"status": "Failure", "code": code, "message": message}
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": {"uid": uid, "allowed": False, "status": status}}
