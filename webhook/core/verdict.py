"""The engine's answer: allow (perhaps with a patch) or deny.

Named after controller-runtime's admission responses: `Verdict.allow()`,
`Verdict.deny(message)` and `Verdict.patched(ops, changed)` play the part of
`Allowed`, `Denied` and `Patched`, and `with_warnings` appends like
`Response.WithWarnings`.

A verdict cannot be changed after it is made, patch included: the patch is
kept as the JSON text that goes on the wire, and `patch` decodes a fresh copy
on every read. Whatever a caller does to what it reads, the next answer is
the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import orjson

from webhook.base.text import MAX_WARNING_LENGTH, shorten


JsonPatch = tuple[dict[str, object], ...]
"""RFC 6902 operations (`{"op": "replace", "path": ..., "value": ...}`), in order."""


class Verdict(NamedTuple):
    """Allowed with an RFC 6902 patch and warnings, or denied with a message.

    Build one with the named constructors rather than by hand. A named tuple: its fields cannot be set, and
    making one costs a tuple (several are made per review).
    """

    allowed: bool
    """Whether the object may be stored."""
    message: str = ""
    """Why it is denied and how to fix it; empty when allowed."""
    patch_json: bytes = b""
    """The patch as RFC 6902 JSON text, as sent in the response; empty for no patch."""
    warnings: tuple[str, ...] = ()
    """What `kubectl` shows the user, each at most `MAX_WARNING_LENGTH` characters."""
    changed: tuple[str, ...] = ()
    """The fields the patch touches (`command`, `args`, ...), for the `changed` audit annotation."""

    @classmethod
    def allow(cls) -> Verdict:
        """Allowed as it is: no patch, no warnings."""
        return cls(True)

    @classmethod
    def deny(cls, message: str) -> Verdict:
        """Denied; `message` says why and how to fix the object."""
        return cls(False, message)

    @classmethod
    def patched(cls, patch: Iterable[dict[str, object]], changed: tuple[str, ...]) -> Verdict:
        """Allowed after applying `patch` (RFC 6902 operations), which changes the fields named in `changed`."""
        ops = list(patch)
        return cls(True, patch_json=orjson.dumps(ops) if ops else b"", changed=changed)

    @property
    def patch(self) -> JsonPatch:
        """The patch's operations, decoded afresh on every read (empty tuple for none)."""
        if not self.patch_json:
            return ()
        return tuple(orjson.loads(self.patch_json))

    def with_warnings(self, warnings: Iterable[str]) -> Verdict:
        """This verdict with `warnings` appended to its own, each cut to `MAX_WARNING_LENGTH`
        characters and kept once, in order."""
        added = tuple(shorten(w, MAX_WARNING_LENGTH) for w in warnings)
        if not added:
            return self
        merged = tuple(dict.fromkeys(self.warnings + added))
        return Verdict(self.allowed, self.message, self.patch_json, merged, self.changed)
