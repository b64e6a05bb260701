"""The package is typed: mypy --strict passes over it (configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def test_the_package_passes_mypy_strict() -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    cmd = [mypy] if mypy else [sys.executable, "-m", "mypy"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_package_ships_its_py_typed_marker() -> None:
    assert (ROOT / "webhook" / "py.typed").exists()
