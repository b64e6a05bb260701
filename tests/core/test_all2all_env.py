"""The all2all backend written into the container's env where the release reads it from there
(webhook/core/all2allenv.py), on InferenceServices: the release from the image tag, env already there, edits.
The env in every vLLM container of every kind and layout, and its undo: tests/admission/test_rules_every_kind.py.
Real releases judge the same cases in tests/vllm/test_real_vllm.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.helpers import apply, isvc, model
from webhook.admission.kinds import mutate
from webhook.core.annotations import UNDO_RECORD

SERVE = ["vllm", "serve", "/mnt/models"]
ENV = "VLLM_ALL2ALL_BACKEND"


def asked(release: str, backend: str = "deepep_low_latency", env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    obj = isvc(command=SERVE, annotations={"ep.all2all-backend": backend})
    model(obj)["image"] = f"vllm/vllm-openai:v{release}"
    if env is not None:
        model(obj)["env"] = env
    return obj


def run(obj: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    verdict = mutate(copy.deepcopy(obj))
    assert verdict.allowed, verdict.message
    return apply(obj, verdict), verdict


def turned(obj: dict[str, Any], enabled: str) -> dict[str, Any]:
    off = copy.deepcopy(obj)
    off["metadata"]["annotations"]["ep.enabled"] = enabled
    return run(off)[0]


OTHER = [{"name": "HOME", "value": "/root"}]


@pytest.mark.parametrize("env", [None, OTHER, [*OTHER, {"name": ENV, "value": "naive"}]], ids=["none", "other", "set"])
@pytest.mark.parametrize("release", ["0.10.1.1", "0.11.0"])
def test_before_0_11_1_the_backend_goes_into_the_env_and_turning_ep_off_restores_it(
    release: str, env: list[dict[str, Any]] | None
) -> None:
    obj = asked(release, env=copy.deepcopy(env))
    out, verdict = run(obj)
    assert "--all2all-backend" not in model(out)["command"]
    written = model(out)["env"]
    assert [e for e in written if e["name"] == ENV] == [{"name": ENV, "value": "deepep_low_latency"}]
    assert [e for e in written if e["name"] != ENV] == [e for e in env or [] if e["name"] != ENV]  # the rest stays
    assert any(f"set env {ENV}=deepep_low_latency" in w and release in w for w in verdict.warnings)
    assert run(out)[1].patch == ()  # idempotent
    restored = turned(out, "false")
    assert restored["spec"] == obj["spec"] and UNDO_RECORD not in restored["metadata"]["annotations"]


def test_an_env_already_as_asked_is_not_written_nor_owned() -> None:
    obj = asked("0.11.0", env=[{"name": ENV, "value": "deepep_low_latency"}])
    verdict = mutate(copy.deepcopy(obj))
    assert verdict.allowed and not any("/env" in op["path"] for op in verdict.patch)
    assert "/env" not in str(apply(obj, verdict)["metadata"]["annotations"][UNDO_RECORD])


def test_a_new_backend_rewrites_the_env_from_the_original_and_undo_stays_exact() -> None:
    obj = asked("0.10.1.1", env=copy.deepcopy(OTHER))
    out, _ = run(obj)
    out["metadata"]["annotations"]["ep.all2all-backend"] = "deepep_high_throughput"
    again, _ = run(out)
    assert model(again)["env"] == [*OTHER, {"name": ENV, "value": "deepep_high_throughput"}]
    assert turned(again, "false")["spec"] == obj["spec"]


def test_an_env_edited_after_the_webhook_keeps_the_edit_when_ep_is_turned_off() -> None:
    obj = asked("0.10.1.1")
    out, _ = run(obj)
    model(out)["env"].append({"name": "EXTRA", "value": "1"})
    edited, _ = run(out)
    restored = turned(edited, "false")
    assert model(restored)["env"] == [{"name": "EXTRA", "value": "1"}]
    assert "--enable-expert-parallel" not in model(restored)["command"]


@pytest.mark.parametrize("release", ["0.15.1", "0.14.0"])
def test_on_0_14_to_0_15_a_conflicting_env_is_aligned_and_an_absent_one_left_absent(release: str) -> None:
    obj = asked(release, env=[{"name": ENV, "value": "naive"}])
    out, _ = run(obj)
    assert model(out)["env"] == [{"name": ENV, "value": "deepep_low_latency"}]
    assert "--all2all-backend" in model(out)["command"]
    assert turned(out, "false")["spec"] == obj["spec"]
    plain, _ = run(asked(release))
    assert "env" not in model(plain)


@pytest.mark.parametrize("release", ["0.11.2", "0.24.0"])
def test_where_the_flag_decides_the_env_is_left_as_it_is(release: str) -> None:
    out, _ = run(asked(release, env=[{"name": ENV, "value": "naive"}]))
    assert model(out)["env"] == [{"name": ENV, "value": "naive"}]


@pytest.mark.parametrize("release", ["0.10.1.1", "0.15.1"])
@pytest.mark.parametrize("entry", [{"valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}, {"value": "$(B)"}])
def test_an_env_known_only_at_run_time_is_denied(release: str, entry: dict[str, Any]) -> None:
    verdict = mutate(asked(release, env=[{"name": ENV, **entry}]))
    assert not verdict.allowed and ENV in verdict.message and f"vLLM {release}" in verdict.message
    assert "remove" in verdict.message


def test_a_hand_written_backend_flag_goes_where_the_release_has_none() -> None:
    obj = asked("0.11.0")
    model(obj)["command"] = [*SERVE, "--all2all-backend", "naive"]
    out, _ = run(obj)
    assert "--all2all-backend" not in model(out)["command"]
    assert model(out)["env"] == [{"name": ENV, "value": "deepep_low_latency"}]
