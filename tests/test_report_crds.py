"""scripts/report-crds.sh: the cached folder on stdout, refusal of bad versions, what the folder holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import ROOT

SCRIPT = ROOT / "scripts" / "report-crds.sh"


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_a_bad_version_is_refused_with_the_reason() -> None:
    done = run({"VLLM_EP_OPENREPORTS_VERSION": "latest"})
    assert done.returncode != 0 and "bad version 'latest'" in done.stderr and not done.stdout


def test_a_cached_folder_of_the_pinned_versions_is_printed_without_downloading(tmp_path: Path) -> None:
    cached = tmp_path / "vllm-ep-webhook" / "report-crds-9.9.9-8.8.8"
    for sub, name in (("openreports", "openreports.io_reports.yaml"), ("wgpolicy", "wgpolicyk8s.io_policyreports.yaml")):
        (cached / sub).mkdir(parents=True)
        (cached / sub / name).write_text("kind: CustomResourceDefinition\n")
    (cached / "VERSION").write_text("openreports v9.9.9 kyverno v8.8.8\n")
    env = {"XDG_CACHE_HOME": str(tmp_path), "VLLM_EP_OPENREPORTS_VERSION": "9.9.9", "VLLM_EP_KYVERNO_VERSION": "8.8.8",
           "PATH": "/usr/bin:/bin", "GOPROXY": "off"}  # no go, no proxy: only the cache can answer
    done = run(env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(cached)
    (cached / "VERSION").write_text("openreports v9.9.8 kyverno v8.8.8\n")  # another version: not a hit
    assert run(env).returncode != 0
