"""`ep-webhook review`: send manifests to a running webhook as the API server would, and read its answers.

Each InferenceService and LLMInferenceService of a stream goes out as one
`admission.k8s.io/v1` AdmissionReview (operation CREATE, dry run) over HTTPS to
the server's `/mutate`, verified against a CA file; the answer's patch is
decoded from base64. Other documents are not sent: the API server would not
send them either.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from webhook.admission.kinds import KINDS
from webhook.cli.manifests import is_kind, namespace_of, object_ref

TIMEOUT_SECONDS = 10.0
"""How long to wait for one answer (the API server's own limit for a webhook is 10 s by default, 30 s at most)."""


class SendError(Exception):
    """The server could not be reached, or its answer is not an AdmissionReview."""


@dataclass(frozen=True)
class Answer:
    """What the webhook said of one object: `ref` is `<Kind> <namespace>/<name>`."""

    ref: str
    allowed: bool
    message: str
    warnings: tuple[str, ...]
    patch: tuple[dict[str, object], ...]


def review_of(obj: dict[str, object]) -> dict[str, object]:
    """The AdmissionReview (v1) an API server sends for a dry-run CREATE of `obj`."""
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    kind = str(obj.get("kind"))
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
            "namespace": namespace_of(obj),
            "name": metadata.get("name", ""),
            "operation": "CREATE",
            "userInfo": {"username": "ep-webhook-review"},
            "object": obj,
            "oldObject": None,
            "dryRun": True,
        },
    }


def send(objects: Sequence[dict[str, object]], url: str, ca_file: str | None) -> list[Answer]:
    """The webhook's answer for each InferenceService and LLMInferenceService among `objects`, in order.

    `ca_file` verifies the server's certificate (None: the system's CAs). Raises SendError when the
    server cannot be reached or answers with anything but an AdmissionReview for the same uid.
    """
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise SendError(f"cannot read the CA file {ca_file}: {e}") from e
    answers = []
    for obj in objects:
        if not is_kind(obj, KINDS):
            continue
        review = review_of(obj)
        request = urllib.request.Request(
            url, data=json.dumps(review).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise SendError(f"{url} answered HTTP {e.code}: {e.read()[:300].decode(errors='replace')}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SendError(f"cannot reach {url}: {reason}; is the webhook running (./dev serve)?") from e
        except ValueError as e:
            raise SendError(f"{url} did not answer with JSON: {e}") from e
        answers.append(_answer(object_ref(obj), review, body, url))
    return answers


def _answer(name: str, review: dict[str, object], body: object, url: str) -> Answer:
    response = body.get("response") if isinstance(body, dict) else None
    request = review["request"]
    assert isinstance(request, dict)
    if not isinstance(response, dict) or response.get("uid") != request["uid"]:
        raise SendError(f"{url} did not answer with an AdmissionReview for the request it was sent")
    status = response.get("status") if isinstance(response.get("status"), dict) else {}
    assert isinstance(status, dict)
    patch_b64 = response.get("patch")
    patch = json.loads(base64.b64decode(patch_b64)) if isinstance(patch_b64, str) else []
    return Answer(
        name,
        response.get("allowed") is True,
        str(status.get("message", "")),
        tuple(str(w) for w in response.get("warnings") or ()),
        tuple(patch),
    )
