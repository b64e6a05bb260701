"""Building RFC 6902 operations for exactly the paths the engine changed."""

from __future__ import annotations

def escape(key: str) -> str:
    """A JSON-pointer reference token (RFC 6901): `~` then `/` escaped."""
    return key.replace("~", "~0").replace("/", "~1")


def set_value(path: str, old: object, new: object) -> list[dict[str, object]]:
    """add/replace/remove so that `path` holds `new` (None: absent)."""
    if old == new:
        return []
    if new is None:
        return [{"op": "remove", "path": path}]
    if old is None:
        return [{"op": "add", "path": path, "value": new}]
    return [{"op": "replace", "path": path, "value": new}]


def set_annotation(obj: dict[str, object], key: str, value: str | None) -> list[dict[str, object]]:
    """Operations that set or remove one annotation, creating parents if needed."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    current = annotations.get(key) if isinstance(annotations, dict) else None
    if current == value:
        return []
    if value is None:
        return [{"op": "remove", "path": f"/metadata/annotations/{escape(key)}"}]
    if not isinstance(metadata, dict):
        return [{"op": "add", "path": "/metadata", "value": {"annotations": {key: value}}}]
    if not isinstance(annotations, dict):
        return [{"op": "add", "path": "/metadata/annotations", "value": {key: value}}]
    op = "replace" if key in annotations else "add"
    return [{"op": op, "path": f"/metadata/annotations/{escape(key)}", "value": value}]
