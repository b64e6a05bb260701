"""Reloading values kept in files when the files change, Kubernetes volume swaps included.

Secret and ConfigMap volumes update by writing a new timestamped folder and
re-pointing the `..data` symlink, and cert-manager and the self-managed mode
renew certificates the same way. So a file is identified by its resolved
path, inode, size and mtime, and a value read from several files (a
certificate and its key) changes when any of them does. An invalid new
version is logged and counted, the last good value stays in force, and it is
not tried again until the files change once more.

The policy file and the serving certificate (`tls.CertReloader`) both reload
through `Reloading`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("webhook.reload")

Stamp = tuple[tuple[str, int, int, int], ...]
"""Per file: resolved path, inode, size, mtime in nanoseconds."""


def file_stamp(paths: Sequence[str | Path]) -> Stamp | None:
    """What identifies the current version of `paths`; None while one of them is missing."""
    out = []
    for path in paths:
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except OSError:
            return None
        out.append((real, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class Reloading(Generic[T]):
    """The value loaded from a file; `check()` loads it again after the file changes.

    `Reloading(path, load, what)` calls `load(path)`. A subclass watching
    several files (`tls.CertReloader`) calls `_start` instead. An error in the
    first load is raised (the caller reports it at start); later errors are
    counted in `failures` and logged, with the error's text unless
    `quiet_errors` (for key material). `reloads` counts successful reloads.
    """

    def __init__(self, path: str | Path, load: Callable[[str], T], what: str) -> None:
        self._start((path,), lambda: load(str(path)), what, quiet_errors=False)

    def _start(self, paths: tuple[str | Path, ...], load: Callable[[], T], what: str, quiet_errors: bool) -> None:
        self.paths = paths
        self.load = load
        self.what = what
        self.quiet_errors = quiet_errors
        self.stamp = file_stamp(paths)  # before loading: a change during the load is seen by the next check
        self.value = load()
        self.reloads = 0
        self.failures = 0
        self._failed: Stamp | None = None

    def check(self) -> bool:
        """Reload if the files changed since the last attempt and the new version loads; True if reloaded."""
        stamp = file_stamp(self.paths)
        if stamp is None or stamp == self.stamp or stamp == self._failed:
            return False
        try:
            value = self.load()
        except Exception as e:  # noqa: BLE001 - any invalid version keeps the last good one
            self.failures += 1
            self._failed = stamp
            error = type(e).__name__ if self.quiet_errors else str(e)[:300]
            log.error(f"invalid {self.what}; keeping the last good one", extra={"fields": {"error": error}})
            return False
        self.value, self.stamp, self._failed = value, stamp, None
        self.reloads += 1
        log.info(f"reloaded {self.what}", extra={"fields": {"path": str(self.paths[0])}})
        return True
