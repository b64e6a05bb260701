"""Fixtures shared by several test folders, and the `e2e` marker of two of them.

The real API server is session-wide and defined here, once, so that the e2e
tests and the chart tests use the same etcd and kube-apiserver (a fixture
defined in a sub-folder's conftest would start one per folder).

Every test in tests/e2e and tests/chart is marked `e2e` here, by folder, so a
new file there needs nothing to be left out of the fast loop
(`-m "not slow and not e2e"`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.cluster import Cluster, k8s_binaries
from tests.e2e.conftest import install_crds, new_client

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



@pytest.fixture(scope="session")
def vllm_judges() -> Iterator[dict[str, Judge]]:
    """A judge per real vLLM release (tests/vllm_releases.py), by release number."""
    from tests.vllm_releases import Judge, releases

    judges = {release: Judge(release, python) for release, python in releases().items()}
    yield judges
    for judge in judges.values():
        judge.close()
