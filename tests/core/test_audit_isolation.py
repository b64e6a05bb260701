"""The audit reports every object, even when the webhook fails on one of them."""

from __future__ import annotations

from typing import Any

from tests.helpers import isvc
from webhook.admission import audit
from webhook.cli.main import _audit_summary
from webhook.core.policy import DEFAULT
from webhook.kserve.selection import Runtimes


def _in(namespace: str, name: str, obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].update(namespace=namespace, name=name)
    return obj


def _runtimes_failing_in(broken: str) -> Any:
    def runtimes_for(namespace: str) -> Runtimes:
        if namespace == broken:
            raise KeyError(f"runtime cache of {namespace} is corrupt")
        return Runtimes((), ())
    return runtimes_for


def test_one_object_that_raises_is_an_error_finding_and_every_other_object_is_audited() -> None:
    objects = [
        _in("a", "ok", isvc(command=["vllm", "serve", "/mnt/models"])),
        _in("b", "broken", isvc(command=["vllm", "serve", "/mnt/models"])),
        _in("c", "huge", isvc(command=["vllm", "serve", "/mnt/models"], limits={"nvidia.com/gpu": "1" * 4401})),
    ]
    findings = audit.run(objects, DEFAULT, lambda ns: {}, _runtimes_failing_in("b"))
    by_name = {f.name: f for f in findings}
    assert [f.name for f in findings] == ["ok", "broken", "huge"]
    assert by_name["ok"].result == "change"
    assert by_name["broken"].result == "error"
    assert "KeyError" in by_name["broken"].message and "runtime cache of b is corrupt" in by_name["broken"].message
    assert by_name["huge"].result == "deny" and "4,401 characters" in by_name["huge"].message
    assert audit.counts(findings)[("b", "InferenceService", "error")] == 1
    assert _audit_summary(findings) == "3 objects: 0 compliant, 1 change, 1 deny, 1 error"


def test_the_summary_names_errors_only_when_there_are_some() -> None:
    findings = audit.run([isvc(command=["vllm", "serve", "/mnt/models"])], DEFAULT, lambda ns: {}, None)
    assert _audit_summary(findings) == "1 objects: 0 compliant, 1 change, 0 deny"
