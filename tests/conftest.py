"""Fixtures shared by several test folders, and the `e2e` marker of two of them.

The real API server is session-wide and defined here, once, so that the e2e
tests and the chart tests use the same etcd and kube-apiserver (a fixture
defined in a sub-folder's conftest would start one per folder).

Every test in tests/e2e and tests/chart is marked `e2e` here, by folder, so a
new file there needs nothing to be left out of the fast loop
(`-m "not slow and not e2e"`).

Every launch the fast grammar (tests/vllm_grammar.py) parses is judged again by the real vLLM release
that runs it (tests/vllm_runs.py), for the whole session; EP_WEBHOOK_GRAMMAR_ONLY=1 turns that off for
the inner loop (`./dev test` and CI run with it on).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.cluster import Cluster, k8s_binaries
from tests.e2e.conftest import install_crds, new_client
from tests.vllm_runs import GRAMMAR_ONLY

if TYPE_CHECKING:
    from tests.vllm_releases import Judge


E2E_FOLDERS = (Path(__file__).parent / "e2e", Path(__file__).parent / "chart")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests under E2E_FOLDERS `e2e` (they need a real API server or helm), and run the tests
    using KServe's controllers last: those controllers watch every namespace and put finalizers and
    status on every InferenceService, which other e2e tests must not see."""
    for item in items:
        if any(folder in item.path.parents for folder in E2E_FOLDERS):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: "kserve" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"), k8s_binaries())
    try:
        c.start()
        install_crds(new_client(c.kubeconfig))
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> client.ApiClient:
    return new_client(cluster.kubeconfig)



@pytest.fixture(scope="session", autouse=True)
def vllm_cross_check() -> Iterator[None]:
    """The real releases judge every parse of tests/vllm_grammar.py (tests/vllm_runs.py), unless
    GRAMMAR_ONLY; the judges (shared with `vllm_judges`) stop at the end of the session."""
    from tests import vllm_grammar
    from tests.vllm_runs import CROSS_CHECK

    if not GRAMMAR_ONLY:
        vllm_grammar.CHECKS.append(CROSS_CHECK)
    try:
        yield
    finally:
        if CROSS_CHECK in vllm_grammar.CHECKS:
            vllm_grammar.CHECKS.remove(CROSS_CHECK)
        CROSS_CHECK.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many of the grammar's parses the real releases judged."""
    from tests.vllm_runs import CROSS_CHECK

    if GRAMMAR_ONLY:
        terminalreporter.write_line("vLLM cross-check off (EP_WEBHOOK_GRAMMAR_ONLY): the grammar alone judged")
    elif CROSS_CHECK.judged or CROSS_CHECK.unjudged:
        terminalreporter.write_line(
            f"vLLM cross-check: {CROSS_CHECK.judged} parses judged by the real releases "
            f"({len(CROSS_CHECK.verdicts)} distinct launches)"
            + (f"; not judged (release not installed): {CROSS_CHECK.unjudged}" if CROSS_CHECK.unjudged else ""))


@pytest.fixture(scope="session")
def vllm_judges() -> dict[str, Judge]:
    """A judge per real vLLM release (tests/vllm_releases.py), by release number (the cross-check's own)."""
    from tests.vllm_runs import CROSS_CHECK

    return CROSS_CHECK.judges()
