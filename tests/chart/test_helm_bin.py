"""scripts/helm-bin.sh: the folder on stdout, the pinned version, HELM_BIN_DIR, refusal of v4."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.chart.helmtool import Helm
from tests.helpers import ROOT

SCRIPT = ROOT / "scripts" / "helm-bin.sh"


def pinned() -> str:
    found = re.search(r'HELM_VERSION="\$\{VLLM_EP_HELM_VERSION:-([0-9.]+)\}"', SCRIPT.read_text())
    assert found, "the script pins a default helm version"
    return found.group(1)


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_the_cached_helm_reports_the_pinned_version(helm: Helm) -> None:
    if os.environ.get("HELM_BIN_DIR") or os.environ.get("VLLM_EP_HELM_VERSION"):
        pytest.skip("helm comes from HELM_BIN_DIR / another version here")
    out = helm.run("version", "--template", "{{.Version}}")
    assert out.strip() == f"v{pinned()}"
    assert pinned().startswith("3.")


def test_helm_bin_dir_is_used_as_is_and_only_the_folder_goes_to_stdout(helm: Helm, tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "helm").symlink_to(helm.binary)
    done = run({"HELM_BIN_DIR": str(folder)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{folder}\n"
    assert "using HELM_BIN_DIR" in done.stderr


def test_a_helm_bin_dir_without_helm_falls_back_to_the_cache(helm: Helm, tmp_path: Path) -> None:
    if os.environ.get("VLLM_EP_HELM_VERSION"):
        pytest.skip("another helm version is pinned here")
    done = run({"HELM_BIN_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "helm").is_file()
    assert "has no helm executable" in done.stderr


def test_only_helm_3_versions_are_accepted(tmp_path: Path) -> None:
    done = run({"VLLM_EP_HELM_VERSION": "4.0.0", "HELM_BIN_DIR": "", "XDG_CACHE_HOME": str(tmp_path)})
    assert done.returncode != 0
    assert done.stdout == ""
    assert "must be 3.x" in done.stderr
