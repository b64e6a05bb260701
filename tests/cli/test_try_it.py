"""`./dev try` / `ep-webhook review`: manifests sent to a running server as the API server would send them."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_harness import Server, free_port, server_with_new_certs
from webhook.cli.main import main

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with server_with_new_certs(tmp_path_factory.mktemp("try")) as s:
        yield s


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdin=io.StringIO(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _review(server: Server, path: Path) -> tuple[int, str, str]:
    return _run("review", "-f", str(path), "--url", f"https://localhost:{server.port}/mutate", "--ca", str(server.ca()))


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_gets_from_the_server_the_patch_and_warnings_the_offline_cli_computes(
    server: Server, example: Path
) -> None:
    code, out, err = _review(server, example)
    assert code == 0, err
    # the server runs without a cluster, so it knows no runtimes: the offline CLI is told to know none either
    offline_code, offline_patch, offline_err = _run("mutate", "-f", str(example), "-o", "patch", "--no-default-runtimes")
    assert offline_code == 0, offline_err
    expected = json.loads(offline_patch)
    assert expected, f"{example.name} is not changed by the webhook; the example shows nothing"
    for entry in expected:
        label = f"{entry['kind']} {entry['namespace']}/{entry['name']}"
        header = f"{label}: allowed, {len(entry['patch'])} patch operation(s)"
        assert header in out
        # the printed patch is the server's, and equals what the offline CLI computes
        section = out.split(header, 1)[1]
        start = section.index("\n  [")
        printed, _ = json.JSONDecoder().raw_decode(section[start:].lstrip())
        assert printed == entry["patch"]
    for line in offline_err.splitlines():  # "warning: <label>: <text>"
        assert f"  warning: {line.split(': ', 2)[2]}" in out


def test_a_denial_is_printed_with_its_message_and_exits_1(server: Server, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: bad\n"
        "  annotations: {ep.enabled: \"maybe\"}\nspec:\n  predictor:\n    model:\n"
        "      modelFormat: {name: vllm}\n      command: [vllm, serve, /mnt/models]\n"
        "      resources: {limits: {nvidia.com/gpu: \"8\"}}\n"
    )
    code, out, _ = _review(server, manifest)
    assert code == 1
    assert "InferenceService default/bad: denied" in out
    assert "  message: " in out and "ep.enabled" in out


def test_no_server_is_a_one_line_error_saying_to_start_it(tmp_path: Path, server: Server) -> None:
    code, out, err = _run(
        "review", "-f", str(ROOT / "examples" / "vllm-serve-list.yaml"),
        "--url", f"https://localhost:{free_port()}/mutate", "--ca", str(server.ca()),
    )
    assert code == 2 and out == ""
    assert err.startswith("error: cannot reach") and "./dev serve" in err and err.count("\n") == 1


def test_dev_try_without_a_file_prints_its_usage() -> None:
    result = subprocess.run([str(ROOT / "dev"), "try"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "usage: ./dev try FILE" in result.stderr
