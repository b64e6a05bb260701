"""The undo record: what the webhook changed, so that turning EP off can restore it.

It lives in the webhook's own annotation `vllm-ep-webhook.io/original` as JSON.
For an InferenceService (one container) it is

    {"container": "/spec/predictor/model",   # JSON pointer of the edited container
     "command": [...] | null,                 # command before the webhook touched it (null: absent)
     "args": [...] | null,                    # args before the webhook touched it (null: absent)
     "applied": "sha256:..."}                 # digest of command/args as the webhook left them

and for workloads whose edits span several fields (an LLMInferenceService's
`parallelism` and its `main` containers' args) it is

    {"fields": {"/spec/parallelism": {...} | null, "/spec/template/containers/0/args": [...] | null},
     "applied": "sha256:..."}                 # digest of those fields as the webhook left them

While the fields still match `applied`, the webhook recomputes from the stored
originals (so a new GPU request gives a new data-parallel size) and restores
them exactly when EP is turned off. When something else has edited them since,
their current values become the new originals.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import NamedTuple

import orjson

from webhook.base.errors import Denied
from webhook.base.jsonvalues import string_list
from webhook.core.annotations import UNDO_RECORD

Fields = tuple[tuple[str, object], ...]


class Undo(NamedTuple):
    """Original values by JSON pointer, and the digest of the values the webhook left there."""

    fields: Fields
    applied: str

    @property
    def pointers(self) -> frozenset[str]:
        """The fields the record covers."""
        return frozenset(p for p, _ in self.fields)

    def original(self, pointer: str) -> object:
        """The value the field had before the webhook changed it (None: absent)."""
        return dict(self.fields).get(pointer)


def _compact(value: object, sort_keys: bool = False) -> bytes:
    """Compact JSON; orjson when it can (fast), the json module for odd strings (lone surrogates)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys).encode(
            "utf-8", "surrogatepass")


def _container_pair(pointers: list[str]) -> str | None:
    """The container pointer when the fields are exactly its command and args (the InferenceService form)."""
    if len(pointers) == 2:
        base = pointers[0].rpartition("/")[0]
        if sorted(pointers) == [f"{base}/args", f"{base}/command"]:
            return base
    return None


def _as_list(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def digest(values: Mapping[str, object]) -> str:
    """A stable fingerprint of the fields as the webhook left them."""
    container = _container_pair(list(values))
    if container is not None:
        payload = {"command": _as_list(values[f"{container}/command"]), "args": _as_list(values[f"{container}/args"])}
        return "sha256:" + hashlib.sha256(_compact(payload)).hexdigest()
    # objects come back from the API server with their keys in its order, not ours
    return "sha256:" + hashlib.sha256(_compact({k: _as_list(v) for k, v in values.items()}, sort_keys=True)).hexdigest()


def dump(undo: Undo) -> str:
    """The annotation value for a record."""
    values = dict(undo.fields)
    container = _container_pair(list(values))
    if container is not None:
        payload: object = {
            "container": container,
            "command": _as_list(values[f"{container}/command"]),
            "args": _as_list(values[f"{container}/args"]),
            "applied": undo.applied,
        }
    else:
        payload = {"fields": {k: _as_list(values[k]) for k in sorted(values)}, "applied": undo.applied}
    return _compact(payload).decode("utf-8", "surrogatepass")


def read(annotations: Mapping[str, object]) -> Undo | None:
    """The stored record, None if absent; Denied if it was tampered with (nested arrays thousands deep included)."""
    raw = annotations.get(UNDO_RECORD)
    if raw is None:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
        if not isinstance(data, dict) or not isinstance(data.get("applied"), str):
            raise ValueError
        if "fields" in data:
            fields = data["fields"]
            if not isinstance(fields, dict) or not all(isinstance(k, str) and k.startswith("/") for k in fields):
                raise ValueError
            return Undo(tuple(sorted(fields.items())), data["applied"])
        container = data.get("container")
        if not isinstance(container, str):
            raise ValueError
        try:
            command, args = string_list(data.get("command"), "command"), string_list(data.get("args"), "args")
        except Denied:
            raise ValueError from None
        return Undo(((f"{container}/args", args), (f"{container}/command", command)), data["applied"])
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes, at once
        raise Denied(
            f"annotation {UNDO_RECORD} is managed by the webhook and is not valid; remove it "
            f"(the webhook then takes the current command as the original)"
        ) from None
