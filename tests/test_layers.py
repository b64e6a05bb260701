"""The package's layers stay layers (contracts in pyproject.toml, checked by import-linter).

- `webhook/` holds only the layer packages; each module imports only from its own package or
  lower ones (lowest first: base, vllm, core, kserve, admission, tls, cluster, server, cli;
  `docs/architecture.md` says what each holds);
- the pure layers (base to admission) import nothing that does I/O, and call no `open`/`print`/`input`
  (built-ins, which no import shows).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "webhook"
PURE = ("base", "vllm", "core", "kserve", "admission")
LAYERS = (*PURE, "tls", "cluster", "server", "cli")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's verdict on the package under `root`, with the project's contracts."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=root, capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_every_module_lives_in_a_layer() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == [], f"modules outside the layer packages: {loose}"
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(LAYERS)


def test_the_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_the_contracts_catch_an_upward_import_and_io_in_the_core(tmp_path: Path) -> None:
    """The contracts can fail: a copy of the package with one upward import and one `import os` in the core."""
    copy = tmp_path / "webhook"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "vllm" / "probe.py").write_text("from webhook.core.verdict import Verdict\n")
    (copy / "core" / "probe.py").write_text("import os\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "webhook.vllm.probe -> webhook.core.verdict" in result.stdout
    assert "webhook.core.probe -> os" in result.stdout


@pytest.mark.parametrize(
    "path", sorted(p for layer in PURE for p in (PACKAGE / layer).glob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_pure_layers_call_no_io_builtins(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [n.lineno for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("open", "print", "input")]
    assert calls == [], f"{path.relative_to(PACKAGE)} calls open/print/input at lines {calls}"
