"""Upgrade readiness: the audit as if every object's runtime ran another vLLM release (webhook/admission/audit.py,
`target`); real releases confirm that what it reports is what the release would refuse or run otherwise."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.helpers import apply, isvc, model
from webhook.admission import audit
from webhook.admission.kinds import mutate
from webhook.cli.main import upgrade_summary
from webhook.core.policy import DEFAULT, parse

SERVE = ["vllm", "serve", "/mnt/models"]


def _in(name: str, obj: dict[str, Any], image: str | None = None) -> dict[str, Any]:
    obj["metadata"].update(namespace="ml", name=name)
    if image:
        model(obj)["image"] = image
    return obj


def _as_admitted(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the webhook left it at admission (the audit then finds it compliant today)."""
    verdict = mutate(copy.deepcopy(obj))
    assert verdict.allowed, verdict.message
    return apply(obj, verdict)


def objects() -> list[dict[str, Any]]:
    return [
        _as_admitted(_in("env-backend", isvc(command=SERVE, annotations={"ep.all2all-backend": "deepep_low_latency"}),
                         "vllm/vllm-openai:v0.11.0")),
        _as_admitted(_in("short-ep", isvc(command=[*SERVE, "-ep"]))),
        _as_admitted(_in("deepep-v2", isvc(command=SERVE, annotations={"ep.all2all-backend": "deepep_v2"}))),
        _as_admitted(_in("plain-ep", isvc(command=SERVE))),
        _in("not-asking", isvc(command=SERVE, enabled=None)),
    ]


def by_name(target: tuple[int, ...]) -> dict[str, audit.Finding]:
    return {f.name: f for f in audit.run(objects(), DEFAULT, lambda ns: {}, None, target=target)}


def test_today_every_object_is_as_the_webhook_left_it() -> None:
    assert {f.name: f.result for f in audit.run(objects(), DEFAULT, lambda ns: {}, None)} == {
        "env-backend": "compliant", "short-ep": "compliant", "deepep-v2": "compliant", "plain-ep": "compliant",
        "not-asking": "compliant"}


def test_on_0_33_a_backend_set_through_the_env_would_be_ignored_so_the_flag_would_be_written() -> None:
    found = by_name((0, 33, 0))
    assert set(found) == {"env-backend"}  # the same verdict for every other object
    f = found["env-backend"]
    assert f.result == "change" and f.message.startswith("today compliant; on vLLM 0.33.0 change: ")
    assert "--all2all-backend" in f.message and "spec.predictor.model.command" in f.changes


def test_on_0_11_0_the_short_ep_flag_and_a_newer_backend_would_break() -> None:
    found = by_name((0, 11, 0))
    assert found["short-ep"].result == "change" and "--enable-expert-parallel" in found["short-ep"].message
    assert found["deepep-v2"].result == "deny" and "does not accept all2all backend deepep_v2" in found["deepep-v2"].message
    assert "plain-ep" not in found and "not-asking" not in found and "env-backend" not in found


def test_the_target_wins_over_the_annotation_and_the_policy() -> None:
    pinned = _as_admitted(_in("pinned", isvc(command=SERVE, annotations={
        "ep.all2all-backend": "deepep_v2", "ep.vllm-version": "0.33.0"})))
    policy = parse('defaults: {vllmVersion: "0.33.0"}\n')
    (f,) = audit.run([pinned], policy, lambda ns: {}, None, target=(0, 15, 1))
    assert f.result == "deny" and "vLLM 0.15.1 (the upgrade target)" in f.message


def test_the_summary_counts_what_would_differ_among_every_object_audited() -> None:
    findings = list(by_name((0, 11, 0)).values())
    assert upgrade_summary(findings, 5, "0.11.0") == "5 objects audited for vLLM 0.11.0: 2 would differ (1 change, 1 deny)"
    assert upgrade_summary([], 5, "0.33.0") == "5 objects audited for vLLM 0.33.0: 0 would differ"


@pytest.mark.parametrize("target", ["0.11.0", "0.33.0"])
def test_what_the_upgrade_audit_reports_is_what_the_target_release_does(vllm_judges: Any, target: str) -> None:
    """Each object reported: its command as it is, started by the target release, fails or runs another backend;
    each object not reported: it starts with the backend asked (its env as the pod gets it)."""
    from tests.vllm_releases import serve_argv

    found = by_name(tuple(int(p) for p in target.split(".")))
    for obj in objects():
        if obj["metadata"]["annotations"].get("ep.enabled") is None:
            continue
        m = model(obj)
        env = {e["name"]: e["value"] for e in m.get("env") or []}
        result = vllm_judges[target].judge(serve_argv(m["command"]), 8, env)
        asked = obj["metadata"]["annotations"].get("ep.all2all-backend")
        ran = result.parallel.get("all2all_backend", result.envs.get("VLLM_ALL2ALL_BACKEND")) if result.ok else None
        works = result.ok and (asked is None or ran == asked)
        assert works == (obj["metadata"]["name"] not in found), (obj["metadata"]["name"], result.error or ran)
