"""The engine's answer: allow (perhaps with a patch) or deny."""

from __future__ import annotations

from dataclasses import dataclass, field

JsonPatch = tuple[dict[str, object], ...]


@dataclass(frozen=True)
class Verdict:
    """Allowed with an RFC 6902 patch and warnings, or denied with a message.

    `changed` names the fields the patch touches, for audit annotations.
    Build one with the named constructors rather than by hand.
    """

    allowed: bool
    message: str = ""
    patch: JsonPatch = ()
    warnings: tuple[str, ...] = ()
    changed: tuple[str, ...] = field(default=())

    @classmethod
    def allow(cls) -> Verdict:
        return cls(True)

    @classmethod
    def deny(cls, message: str) -> Verdict:
        return cls(False, message)

    @classmethod
    def patched(cls, patch: JsonPatch, changed: tuple[str, ...]) -> Verdict:
        return cls(True, patch=patch, changed=changed)

    def with_warnings(self, warnings: tuple[str, ...] | list[str]) -> Verdict:
        if not warnings:
            return self
        return Verdict(self.allowed, self.message, self.patch, tuple(dict.fromkeys(warnings)), self.changed)
