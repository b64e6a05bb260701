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
