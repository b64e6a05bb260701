"""The undo record: what the webhook changed, so that turning EP off can restore it.

It lives in the webhook's own annotation `vllm-ep-webhook.io/original` as JSON.
For an InferenceService (one container) it is

    {"container": "/spec/predictor/containers/kserve-container",  # the edited container (see keys below)
     "command": [...] | null,                 # the user's command without the webhook's change (null: absent)
     "args": [...] | null,                    # the user's args without the webhook's change (null: absent)
     "applied": "sha256:..."}                 # digest of command/args as the webhook left them

and for workloads whose edits span several fields (an LLMInferenceService's
`parallelism` and its `main` containers' args) it is

    {"fields": {"/spec/parallelism": {...} | null, "/spec/template/containers/main/args": [...] | null},
     "applied": "sha256:..."}                 # digest of those fields (by key) as the webhook left them

Keys are JSON pointers in which a container is named, not numbered
(`/containers/kserve-container/`, `/containers/main/`; a container without a name, or with an
all-digit one, keeps its index), so that a container inserted before the one the webhook edited does
not point the record at the wrong one: a key is resolved to the container's current index when the
record is read (`read`), the first of that name, as KServe picks its container. The role is the rest
of the key (`/spec/predictor/model`, `/spec/prefill/worker/...`). Records written by earlier versions
(index pointers) are read as they are.

While the fields still match `applied`, the webhook recomputes from the stored
originals (so a new GPU request gives a new data-parallel size) and restores
them exactly when EP is turned off. When something else has edited them since,
the record becomes the current values less the webhook's own change (`webhook.core.rebase`):
the user's intent, never an old original under a new digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import orjson

from webhook.base.errors import Denied
from webhook.base.jsonvalues import string_list
from webhook.core.annotations import UNDO_RECORD

Fields = tuple[tuple[str, object], ...]


class Undo(NamedTuple):
    """Original values by current JSON pointer, the digest of the values the webhook left there, and each
    pointer's key in the record (the form the digest was taken over)."""

    fields: Fields
    applied: str
    keys: tuple[tuple[str, str], ...] = ()
    """(pointer, key) where the record's key for a pointer is not the pointer itself (a named container)."""

    @property
    def pointers(self) -> frozenset[str]:
        """The fields the record covers."""
        return frozenset(p for p, _ in self.fields)

    def original(self, pointer: str) -> object:
        """The value the field had before the webhook changed it (None: absent)."""
        return dict(self.fields).get(pointer)

    def untouched(self, values: Mapping[str, object]) -> bool:
        """Whether `values` (by pointer) are exactly the fields the record covers, as the webhook left them."""
        if self.pointers != frozenset(values):
            return False
        if not self.keys:
            return self.applied == digest(values)
        keys = dict(self.keys)
        return self.applied == digest({keys.get(p, p): v for p, v in values.items()})

    def anchored(self, owned: Iterable[str]) -> Undo:
        """The record with each pointer that matches no `owned` field moved to the one owned field of the same
        role (the same pointer but for the container's index or name), when there is exactly one unclaimed:
        a record written with index pointers by an earlier version, or a container renamed since."""
        owned = frozenset(owned)
        lost = [p for p, _ in self.fields if p not in owned]
        if not lost:
            return self
        free: dict[str, list[str]] = {}
        for p in owned - self.pointers:
            free.setdefault(_role_of(p), []).append(p)
        moved = {p: free[_role_of(p)][0] for p in lost if len(free.get(_role_of(p), ())) == 1}
        if not moved:
            return self
        return Undo(tuple(sorted((moved.get(p, p), v) for p, v in self.fields)), self.applied,
                    tuple((moved.get(p, p), k) for p, k in self.keys))


def _role_of(pointer: str) -> str:
    """The pointer with its containers' indices or names left out."""
    return _CONTAINER.sub("/containers/*/", pointer)


_CONTAINER = re.compile(r"/containers/[^/]*/")


def make(originals: Mapping[str, object], written: Mapping[str, object], obj: Mapping[str, object]) -> Undo:
    """The record of a write: `originals` and `written` by the same pointers into `obj` (the object as
    admitted, whose containers are where the pointers say)."""
    fields = tuple(sorted(originals.items()))
    named = {}  # only the pointers whose key differs
    for p, _ in fields:
        if "/containers/" in p:
            key = key_of(obj, p)
            if key != p:
                named[p] = key
    if named:
        return Undo(fields, digest({named.get(p, p): v for p, v in written.items()}), tuple(named.items()))
    return Undo(fields, digest(written))


def _is_name(segment: object) -> bool:
    return isinstance(segment, str) and 0 < len(segment) <= 253 and not segment.isdigit() \
        and "/" not in segment and "~" not in segment


def key_of(obj: Mapping[str, object], pointer: str) -> str:
    """`pointer` with each container index replaced by the container's name, where it has one that
    cannot be read as an index."""
    if "/containers/" not in pointer:
        return pointer
    parts = pointer.split("/")
    node: object = obj
    for i in range(1, len(parts)):
        part = parts[i]
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            if parts[i - 1] == "containers" and isinstance(node, dict) and _is_name(node.get("name")):
                parts[i] = str(node["name"])
        else:
            break
    return "/".join(parts)


def resolve(obj: Mapping[str, object], key: str) -> str:
    """The current pointer of a record key: a named container becomes its index (the first of that name);
    a name no longer there stays, so that the key matches no field."""
    if "/containers/" not in key:
        return key
    parts = key.split("/")
    node: object = obj
    for i in range(1, len(parts)):
        part = parts[i]
        if isinstance(node, list):
            if not part.isdigit():
                found = next((j for j, c in enumerate(node) if isinstance(c, dict) and c.get("name") == part), None)
                if found is None:
                    return key
                parts[i] = part = str(found)
            node = node[int(part)] if int(part) < len(node) else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            break
    return "/".join(parts)


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
    """The annotation value for a record (its keys, not its pointers)."""
    if undo.keys:
        named = dict(undo.keys)
        values = {named.get(p, p): v for p, v in undo.fields}
    else:
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


def read(annotations: Mapping[str, object], obj: Mapping[str, object]) -> Undo | None:
    """The stored record, its keys resolved to pointers into `obj`; None if absent; Denied if it was tampered
    with (nested arrays thousands deep included)."""
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
            stored = list(fields.items())
        else:
            container = data.get("container")
            if not isinstance(container, str):
                raise ValueError
            try:
                command, args = string_list(data.get("command"), "command"), string_list(data.get("args"), "args")
            except Denied:
                raise ValueError from None
            stored = [(f"{container}/args", args), (f"{container}/command", command)]
        keys = tuple((resolve(obj, k), k) for k, _ in stored)
        return Undo(tuple(sorted((p, v) for (p, _), (_, v) in zip(keys, stored))), data["applied"], keys)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes, at once
        raise Denied(
            f"annotation {UNDO_RECORD} is managed by the webhook and is not valid; remove it "
            f"(the webhook then takes the current command as the original)"
        ) from None
