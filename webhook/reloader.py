"""Reloading a file-backed value when the file changes (ConfigMap-style swaps included).

Used for the policy: ConfigMap volumes update by re-pointing a `..data`
symlink, so the file is identified by its resolved path, inode, size and
mtime. An invalid new version is logged and counted, and the last good value
stays in force.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("webhook.reload")


def file_stamp(path: str) -> tuple[str, int, int, int] | None:
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_ino, st.st_size, st.st_mtime_ns)


class Reloading(Generic[T]):
    """Holds the value loaded from `path`; `check()` reloads it after a change."""

    def __init__(self, path: str, load: Callable[[str], T], what: str) -> None:
        self.path = path
        self.load = load
        self.what = what
        self.value = load(path)  # errors at start are the caller's to report
        self.stamp = file_stamp(path)
        self.reloads = 0
        self.failures = 0
        self._failed: tuple[str, int, int, int] | None = None

    def check(self) -> bool:
        stamp = file_stamp(self.path)
        if stamp is None or stamp == self.stamp or stamp == self._failed:
            return False
        try:
            value = self.load(self.path)
        except Exception as e:  # noqa: BLE001 - any invalid version keeps the last good one
            self.failures += 1
            self._failed = stamp
            log.error(f"invalid {self.what}; keeping the last good one", extra={"fields": {"error": str(e)[:300]}})
            return False
        self.value, self.stamp, self._failed = value, stamp, None
        self.reloads += 1
        log.info(f"reloaded {self.what}", extra={"fields": {"path": self.path}})
        return True
