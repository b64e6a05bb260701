"""The one exception the core raises on purpose."""

from __future__ import annotations


class Denied(Exception):
    """The object must not be admitted; `message` says why and how to fix it.

    Raised deep inside the core and turned into an `allowed: false` verdict in
    exactly one place (`engine.mutate`), so no helper needs to thread
    error values back up by hand.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotApplicable(Denied):
    """EP cannot be applied to this object (no vLLM launch, too few GPUs, ...).

    A denial when the user asked for EP; when a policy enforces EP on an object
    that did not ask, the object passes untouched instead.
    """
