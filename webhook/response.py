"""Building the AdmissionReview answer from a verdict: a pure function.

The request's uid is copied here and nowhere else, and the answer uses the
apiVersion the request came in.
"""

from __future__ import annotations

import base64

import orjson

from webhook.verdict import Verdict


def build_response(api_version: str, uid: str, verdict: Verdict) -> dict[str, object]:
    response: dict[str, object] = {"uid": uid, "allowed": verdict.allowed}
    if verdict.allowed:
        if verdict.patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(orjson.dumps(list(verdict.patch))).decode("ascii")
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
