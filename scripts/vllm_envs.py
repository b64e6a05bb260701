#!/usr/bin/env python3
"""vllm_envs.py - virtualenvs holding real vLLM releases, for tests that let vLLM itself judge a command.

    scripts/vllm_envs.py [VERSION ...]      # default: every release in RELEASES

Prints one line per release, `VERSION PYTHON` (the venv's interpreter), on
stdout; progress goes to stderr. Each venv holds `vllm==VERSION` installed
without its dependencies, the torch release that vLLM release pins, and the
rest of its requirements except those that only serve inference on a GPU
(`SKIPPED`): enough for its own argument parser and `ParallelConfig` to run on
a machine without GPUs. Nothing is built from source.

Cache: ${XDG_CACHE_HOME:-~/.cache}/vllm-ep-webhook/vllm/<version>/, reused when
its `.ready` stamp is there; built under a lock (concurrent runs build once)
into a temp folder beside it and renamed into place. Installs go through uv
(itself installed from PyPI into the cache), whose cache hard-links identical
files, so releases that share torch and the CUDA wheels share their disk.
`VLLM_EP_VLLM_ENVS=DIR` uses DIR/<version>/ instead of the cache.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

RELEASES = ("0.10.1.1", "0.11.0", "0.11.2", "0.15.1", "0.24.0", "0.33.0")
"""The releases the tests judge with: KServe v0.20's huggingfaceserver bundles 0.24.0, RHOAI 3.2 0.11.2,
vllm/vllm-openai:v0.33.0 is the newest (../shared/vllm/README.md); the others mark flag changes."""
SKIPPED = frozenset({
    "ray", "xformers", "flashinfer-python", "torchaudio", "torchvision", "deep-gemm", "nixl", "cupy-cuda12x",
    "mooncake-transfer-engine",
})
"""Requirements that only run models on GPUs (kernels, distributed runtimes), which `vllm serve`'s parser and
ParallelConfig never import; everything else vLLM requires is installed, as the serve command imports much."""
RECIPE = "2"
"""Bumped when what goes into a venv changes: a cached venv of another recipe is rebuilt."""
UV_VERSION = "0.13.9"
PROBE = (
    "import vllm.platforms as P\n"
    "from vllm.platforms.cpu import CpuPlatform\n"
    "P._current_platform = CpuPlatform()\n"
    "import vllm.config, vllm.engine.arg_utils, vllm.entrypoints.cli.serve\n"
)
"""What the venv must import on a machine without GPUs (the judge, tests/vllm_judge.py, needs these)."""


def log(message: str) -> None:
    print(f"[vllm-envs] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    explicit = os.environ.get("VLLM_EP_VLLM_ENVS")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vllm-ep-webhook" / "vllm"


def uv() -> Path:
    """uv, installed from PyPI into the cache once."""
    tool = cache_root().parent / f"uv-{UV_VERSION}"
    exe = tool / "bin" / "uv"
    if exe.exists():
        return exe
    with locked(tool):
        if not exe.exists():
            log(f"installing uv {UV_VERSION}")
            scratch = Path(tempfile.mkdtemp(prefix=".build-uv.", dir=tool.parent))
            venv.create(scratch, with_pip=True)
            subprocess.run([str(scratch / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                            f"uv=={UV_VERSION}"], check=True, stdout=sys.stderr)
            scratch.rename(tool) if not tool.exists() else shutil.rmtree(scratch)
    return exe


class locked:
    """An exclusive flock on PATH.lock for the duration of a `with`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(f"{path}.lock", "w")

    def __enter__(self) -> None:
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def requirements(site: Path, version: str) -> list[str]:
    """vLLM's own requirements for this platform, less SKIPPED (read from its installed METADATA)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    metadata = next(site.glob(f"vllm-{version}*.dist-info")) / "METADATA"
    env = {**default_environment(), "extra": ""}
    out = []
    for line in metadata.read_text().splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        if re.sub(r"[-_.]+", "-", req.name).lower() in SKIPPED:
            continue
        out.append(str(req).split(";")[0].strip())
    return out


def stamp(version: str) -> str:
    return f"vllm {version} recipe {RECIPE}\n"


def ready(dest: Path) -> bool:
    marker = dest / ".ready"
    return marker.exists() and marker.read_text() == stamp(dest.name) and (dest / "bin" / "python").exists()


def build(version: str) -> Path:
    dest = cache_root() / version
    if ready(dest):
        return dest
    with locked(dest):
        if ready(dest):
            return dest
        started = time.monotonic()
        uv_exe = uv()
        for old in dest.parent.glob(f".build-{version}.*"):
            log(f"removing leftovers of an interrupted build: {old}")
            shutil.rmtree(old, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{version}.", dir=dest.parent))
        try:
            python = sys.executable if sys.version_info[:2] in ((3, 11), (3, 12)) else "python3"
            run = lambda *a: subprocess.run([str(uv_exe), *a], check=True, stdout=sys.stderr,  # noqa: E731
                                            env={**os.environ, "VIRTUAL_ENV": str(tmp)})
            log(f"vLLM {version}: creating the venv")
            run("venv", "--quiet", "--relocatable", "--python", python, str(tmp))
            log(f"vLLM {version}: vllm=={version} without dependencies")
            run("pip", "install", "--quiet", "--python", str(tmp / "bin" / "python"), "--no-deps", f"vllm=={version}")
            site = next(tmp.glob("lib/python3*/site-packages"))
            reqs = requirements(site, version)
            log(f"vLLM {version}: {len(reqs)} requirements ({', '.join(r for r in reqs if r.startswith('torch'))})")
            run("pip", "install", "--quiet", "--python", str(tmp / "bin" / "python"), *reqs)
            subprocess.run([str(tmp / "bin" / "python"), "-c", PROBE], check=True, stdout=sys.stderr)
            (tmp / ".ready").write_text(stamp(version))
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"vLLM {version}: ready in {dest} after {time.monotonic() - started:.0f}s")
    return dest


def main(argv: list[str]) -> int:
    versions = argv or list(RELEASES)
    for version in versions:
        if not re.fullmatch(r"\d+\.\d+\.\d+(\.\d+)?", version):
            log(f"error: {version!r} is not a vLLM release number")
            return 2
    for version in versions:
        try:
            dest = build(version)
        except subprocess.CalledProcessError as e:
            log(f"error: building the vLLM {version} venv failed: {e}")
            return 1
        print(f"{version} {dest / 'bin' / 'python'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
