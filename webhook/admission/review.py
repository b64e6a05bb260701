"""AdmissionReview wire types and decoding of the HTTP body.

The dataclasses (plain slotted ones: frozen dataclasses cost more to build,
and this is per review) mirror the Kubernetes fields the webhook reads, by
name (`uid`, `dryRun`), and hold no logic. `decode` checks in a fixed order — empty,
too big, wrong content type, not JSON, not an AdmissionReview, bad field
types — and raises `BadReview` with the HTTP status for the first failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

V1 = "admission.k8s.io/v1"
"""The AdmissionReview version API servers send by default."""
V1BETA1 = "admission.k8s.io/v1beta1"
"""The older AdmissionReview version, still answered in kind."""
API_VERSIONS = (V1, V1BETA1)
"""The AdmissionReview versions accepted; the answer uses the request's."""
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
"""The operations an AdmissionReview can carry (`request.operation`)."""
MAX_BODY = 3 * 1024 * 1024
"""Largest request body accepted, in bytes (the API server's own limit on an object is about 3 MiB)."""
MAX_VALUES = 200_000
"""Most JSON values a request body may hold, counted before it is decoded as its commas, `[` and `{` (an
upper bound: those inside strings count too, and `[{},{}]` counts two per object). Decoding builds one
Python object per value, so the count bounds memory: a 3 MiB body of a million empty objects took 105 MiB
to decode; at this limit the costliest shape found (distinct keys) takes about 22 MiB and 40 ms
(bench/worst_inputs.py). Real objects count one per 17 to 34 bytes of compact JSON (the examples, KServe's
presets), so the review of an UPDATE of an object at etcd's 1.5 MiB limit (both versions) stays under it.
Each counted character is one byte, so a body of at most MAX_VALUES bytes (most reviews: objects are a
few KiB) is not counted at all."""
JsonValue = object
"""Any decoded JSON value."""


class BadReview(Exception):
    """A malformed webhook request: answered with an HTTP 4xx, not a verdict."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class GroupVersionKind:
    """`request.kind`: what kind of object is under review (group empty for the core group)."""

    group: str
    version: str
    kind: str


@dataclass(slots=True)
class AdmissionRequest:
    """`request`: the fields of an admission request the webhook reads.

    `object` is the object as it would be stored (as decoded, unchecked),
    `name` may be empty on a create with `generateName`.
    """

    uid: str
    kind: GroupVersionKind
    operation: str
    namespace: str
    name: str
    object: JsonValue
    dryRun: bool  # noqa: N815 - the Kubernetes field name


@dataclass(slots=True)
class AdmissionReview:
    """A decoded AdmissionReview: the version it came in and its request."""

    apiVersion: str  # noqa: N815
    request: AdmissionRequest


def _str(data: dict[str, object], key: str, where: str, required: bool = False) -> str:
    value = data.get(key)
    if type(value) is str and (value or not required):  # the usual case, first
        return value
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise BadReview(400, f"{where}.{key} must be a non-empty string" if required else f"{where}.{key} must be a string")
    return value


def check_content_type(content_type: str | None) -> None:
    """Raise `BadReview` (400) unless the media type is `application/json` (parameters ignored)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise BadReview(400, f"content type {media or 'none'!r} is not supported; send application/json")


def decode(body: bytes, content_type: str | None) -> AdmissionReview:
    """The review in `body`, or `BadReview` with the HTTP status and message for the first problem found."""
    if not body:
        raise BadReview(400, "empty request body; expected an AdmissionReview")
    if len(body) > MAX_BODY:
        raise BadReview(413, f"request body is larger than {MAX_BODY} bytes")
    check_content_type(content_type)
    if len(body) > MAX_VALUES:  # a shorter body cannot hold more: each value counted is one byte of it
        values = body.count(b",") + body.count(b"[") + body.count(b"{")
        if values > MAX_VALUES:
            raise BadReview(413, f"request body holds up to {values:,} JSON values, more than the {MAX_VALUES:,} accepted")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadReview(400, f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadReview(400, "request body is not a JSON object; expected an AdmissionReview")
    api_version = data.get("apiVersion")
    if data.get("kind") != "AdmissionReview" or api_version not in API_VERSIONS:
        raise BadReview(400, f"expected kind AdmissionReview with apiVersion {V1} or {V1BETA1}")
    request = data.get("request")
    if not isinstance(request, dict):
        raise BadReview(400, "AdmissionReview has no request object")
    kind = request.get("kind")
    if not isinstance(kind, dict):
        raise BadReview(400, "request.kind must be an object with group, version and kind")
    dry_run = request.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise BadReview(400, "request.dryRun must be a boolean")
    return AdmissionReview(
        apiVersion=str(api_version),
        request=AdmissionRequest(
            uid=_str(request, "uid", "request", required=True),
            kind=GroupVersionKind(
                _str(kind, "group", "request.kind"), _str(kind, "version", "request.kind"),
                _str(kind, "kind", "request.kind", required=True),
            ),
            operation=_str(request, "operation", "request", required=True),
            namespace=_str(request, "namespace", "request"),
            name=_str(request, "name", "request"),
            object=request.get("object"),
            dryRun=dry_run,
        ),
    )
