"""The kubelet's `$(VAR)` expansion used by the KServe e2e tests follows Kubernetes' rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.kubelet import container_argv, container_env, expand, run_container
from tests.helpers import stand_in_bin

ENV = {"PORT": "8080", "EMPTY": ""}


@pytest.mark.parametrize(("text", "expanded"), [
    ("--port=$(PORT)", "--port=8080"),
    ("$(PORT)$(PORT)", "80808080"),
    ("$(EMPTY)x", "x"),
    ("$(UNKNOWN)", "$(UNKNOWN)"),
    ("$$(PORT)", "$(PORT)"),
    ("$$$(PORT)", "$8080"),
    ("cost: $$5", "cost: $5"),
    ("${PORT} $PORT", "${PORT} $PORT"),
    ("$(PORT", "$(PORT"),
    ("end$", "end$"),
    ("$", "$"),
    ("$()", "$()"),
])
def test_references_expand_like_the_kubelet(text: str, expanded: str) -> None:
    assert expand(text, ENV) == expanded


def test_env_entries_see_only_the_entries_before_them() -> None:
    container = {"env": [
        {"name": "A", "value": "a-$(B)"},
        {"name": "B", "value": "b"},
        {"name": "C", "value": "$(A)/$(B)"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]}
    env = container_env(container, {"metadata.name": "p-0"})
    assert env == {"A": "a-$(B)", "B": "b", "C": "a-$(B)/b", "POD": "p-0"}


def test_command_and_args_are_expanded_with_the_whole_env() -> None:
    container = {"command": ["vllm", "serve", "$(MODEL)"], "args": ["--port=$(PORT)", "$(SECRET)"]}
    assert container_argv(container, {"MODEL": "/mnt/models", "PORT": "8080"}) == [
        "vllm", "serve", "/mnt/models", "--port=8080", "$(SECRET)"]


def test_a_container_runs_with_its_env_and_reports_the_argv_vllm_got(tmp_path: Path) -> None:
    container = {
        "command": ["bash", "-c", 'exec vllm serve "$MODEL" --port "$(PORT)" "$@"', "--"],
        "args": ["--max-model-len=$(LEN)"],
        "env": [{"name": "MODEL", "value": "/mnt/models"}, {"name": "PORT", "value": "8080"},
                {"name": "LEN", "value": "4096"}],
    }
    argv = run_container(container, stand_in_bin(tmp_path / "bin"), tmp_path)
    assert argv == ["vllm", "serve", "/mnt/models", "--port", "8080", "--max-model-len=4096"]
