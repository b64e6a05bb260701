"""The policy reports built from audit findings (webhook/admission/reports.py)."""

from __future__ import annotations

from typing import Any

from webhook.admission import audit
from webhook.admission.reports import OPENREPORTS, WGPOLICY, by_namespace, report, same_content
from webhook.core.policy import DEFAULT
from tests.helpers import isvc

CONFIGURED = ["vllm", "serve", "m", "--enable-expert-parallel", "--tensor-parallel-size", "1",
              "--data-parallel-size", "8"]


def placed(obj: dict[str, Any], namespace: str, name: str) -> dict[str, Any]:
    obj["metadata"] = {**obj["metadata"], "namespace": namespace, "name": name, "uid": f"uid-{name}"}
    return obj


def findings() -> list[audit.Finding]:
    objects = [
        placed(isvc(command=CONFIGURED), "team-a", "ready"),
        placed(isvc(command=["vllm", "serve", "m", "-tp", "8"]), "team-a", "needs-ep"),
        placed(isvc(command=["vllm", "serve", "m"], limits={"nvidia.com/gpu": "1"}), "team-a", "one-gpu"),
        placed(isvc(command=["vllm", "serve", "m"], enabled=None), "team-b", "plain"),
    ]
    return audit.run(objects, DEFAULT, lambda _ns: {}, None)


def test_one_report_per_namespace_with_one_result_per_object() -> None:
    grouped = by_namespace(findings())
    assert sorted(grouped) == ["team-a", "team-b"]
    body = report(OPENREPORTS, "team-a", grouped["team-a"], 1_700_000_000)
    assert body["apiVersion"] == "openreports.io/v1alpha1" and body["kind"] == "Report"
    assert body["metadata"] == {"name": "vllm-ep-webhook", "namespace": "team-a",
                                "labels": {"app.kubernetes.io/managed-by": "vllm-ep-webhook"}}
    assert body["summary"] == {"pass": 1, "fail": 1, "warn": 1, "error": 0, "skip": 0}
    results = {r["resources"][0]["name"]: r for r in body["results"]}  # type: ignore[attr-defined]
    assert {n: (r["result"], r["rule"]) for n, r in results.items()} == {
        "ready": ("pass", "ep-compliant"), "needs-ep": ("warn", "ep-would-change"), "one-gpu": ("fail", "ep-denied")}
    assert results["needs-ep"]["resources"] == [{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                                 "namespace": "team-a", "name": "needs-ep", "uid": "uid-needs-ep"}]
    assert "replaced -tp 8 with 1" in results["needs-ep"]["message"]
    assert "spec.predictor.model.command" in results["needs-ep"]["properties"]["changes"]
    assert "at least 2 GPUs" in results["one-gpu"]["message"]
    assert results["ready"]["properties"] == {"ep": "on"} and results["ready"]["message"]
    assert all(r["policy"] == "vllm-ep-webhook" and r["timestamp"] == {"seconds": 1_700_000_000, "nanos": 0}
               for r in results.values())


def test_the_policy_wg_report_has_no_top_level_source() -> None:
    grouped = by_namespace(findings())
    wg = report(WGPOLICY, "team-b", grouped["team-b"], 1)
    assert (wg["apiVersion"], wg["kind"]) == ("wgpolicyk8s.io/v1alpha2", "PolicyReport") and "source" not in wg
    assert report(OPENREPORTS, "team-b", grouped["team-b"], 1)["source"] == "vllm-ep-webhook"


def test_a_report_is_rewritten_only_when_its_results_change() -> None:
    grouped = by_namespace(findings())
    earlier = report(OPENREPORTS, "team-a", grouped["team-a"], 1)
    assert same_content(earlier, report(OPENREPORTS, "team-a", grouped["team-a"], 2))
    assert not same_content(earlier, report(OPENREPORTS, "team-a", grouped["team-a"][:2], 2))
    unlabelled = {**earlier, "metadata": {"name": "vllm-ep-webhook", "namespace": "team-a"}}
    assert not same_content(unlabelled, earlier)


def test_a_long_message_is_cut_to_keep_the_report_small() -> None:
    [f] = by_namespace(findings())["team-b"]
    long = audit.Finding(f.kind, f.api_version, f.namespace, f.name, f.ep, "deny", "x" * 5000, ())
    [r] = report(OPENREPORTS, "team-b", [long], 1)["results"]  # type: ignore[misc]
    assert len(r["message"]) == 1024 and r["message"].endswith("...")


def test_a_namespace_with_more_objects_than_a_report_holds_lists_failures_first_and_counts_all() -> None:
    grouped = by_namespace(findings())["team-a"]  # pass, warn, fail (sorted by name: needs-ep, one-gpu, ready)
    many = [f for f in grouped if f.result == "compliant"] * 1500 + [f for f in grouped if f.result != "compliant"]
    body = report(OPENREPORTS, "team-a", many, 1)
    results = body["results"]
    assert isinstance(results, list) and len(results) == 1000
    assert [r["result"] for r in results[:2]] == ["fail", "warn"]
    assert body["summary"] == {"pass": 1500, "fail": 1, "warn": 1, "error": 0, "skip": 0}


def test_an_object_the_audit_could_not_decide_is_an_error_result_listed_first() -> None:
    from webhook.admission.audit import Finding
    from webhook.admission.reports import kept, result, summary

    ok = Finding("InferenceService", "serving.kserve.io/v1beta1", "ns", "a", False, "compliant", "", ())
    broken = Finding("InferenceService", "serving.kserve.io/v1beta1", "ns", "b", False, "error", "boom", ())
    assert result(broken, 1)["result"] == "error" and result(broken, 1)["rule"] == "ep-audit-error"
    assert summary([ok, broken]) == {"pass": 1, "fail": 0, "warn": 0, "error": 1, "skip": 0}
    assert kept([ok] * 1000 + [broken])[0] is broken
