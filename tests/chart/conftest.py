"""Chart fixtures: helm itself, and the e2e suite's real API server (for dry runs and installs)."""

from __future__ import annotations

import pytest

from tests.chart.helmtool import Helm, helm_binary


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_binary(), tmp_path_factory.mktemp("helm-home"))
