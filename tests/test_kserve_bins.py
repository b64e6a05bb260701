"""scripts/kserve-bins.sh: the folder on stdout, VLLM_EP_KSERVE_BINS, the manifests, failures with reasons."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e import kserve
from tests.helpers import ROOT

SCRIPT = ROOT / "scripts" / "kserve-bins.sh"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def prebuilt(folder: Path, names: tuple[str, ...] = ("manager", "llmisvc")) -> Path:
    folder.mkdir()
    for name in names:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return folder


def test_prebuilt_binaries_are_used_as_they_are_and_only_their_folder_goes_to_stdout(tmp_path: Path) -> None:
    folder = prebuilt(tmp_path / "bins")
    done = run(env={"VLLM_EP_KSERVE_BINS": str(folder), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{folder}\n"
    assert "using VLLM_EP_KSERVE_BINS" in done.stderr
    assert not (tmp_path / "cache").exists()  # nothing built or cached


def test_a_prebuilt_folder_missing_llmisvc_is_not_used(tmp_path: Path) -> None:
    folder = prebuilt(tmp_path / "bins", ("manager",))
    # an unparsable version stops the fallback build before anything is downloaded
    done = run(env={"VLLM_EP_KSERVE_BINS": str(folder), "VLLM_EP_KSERVE_VERSION": "latest",
                    "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert done.returncode != 0 and done.stdout == ""
    assert "bad KServe version 'latest'" in done.stderr


def test_a_failing_script_fails_the_kserve_tests_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_EP_KSERVE_BINS", "")
    monkeypatch.setenv("VLLM_EP_KSERVE_VERSION", "not-a-version")
    with pytest.raises(RuntimeError, match="bad KServe version 'not-a-version'") as failed:
        kserve.kserve_binaries()
    assert "kserve-bins.sh" in str(failed.value)


def test_unknown_options_are_refused() -> None:
    done = run("--bins")
    assert done.returncode != 0 and done.stdout == ""
    assert "usage" in done.stderr


def test_the_manifests_folder_holds_kserve_and_lws_crds_presets_and_webhooks() -> None:
    done = run("--config")
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert done.stdout == f"{folder}\n"
    assert (folder / "VERSION").read_text().splitlines() == ["kserve v0.20.0", "lws v0.8.0"]
    crds = {d["metadata"]["name"] for p in (folder / "crd").rglob("*.yaml") for d in kserve.yaml_docs(p)
            if d.get("kind") == "CustomResourceDefinition" and "versions" in d.get("spec", {})}
    assert {"inferenceservices.serving.kserve.io", "llminferenceservices.serving.kserve.io",
            "servingruntimes.serving.kserve.io"} <= crds
    lws = [d for p in (folder / "lws-crd").glob("*.yaml") for d in kserve.yaml_docs(p)]
    assert [d["metadata"]["name"] for d in lws] == ["leaderworkersets.leaderworkerset.x-k8s.io"]
    presets = [yaml.safe_load(p.read_text()) for p in (folder / "llmisvcconfig").glob("config-llm-template.yaml")]
    assert presets and presets[0]["kind"] == "LLMInferenceServiceConfig"
    hooks = [h["clientConfig"]["service"]["path"] for d in kserve.yaml_docs(folder / "webhook" / "manifests.yaml")
             for h in d["webhooks"]]
    assert "/mutate-serving-kserve-io-v1beta1-inferenceservice" in hooks
