"""Verdicts: appending warnings, and answers no caller can change after the fact."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from tests.helpers import apply, isvc
from webhook.admission.kinds import mutate
from webhook.admission.response import build_response
from webhook.core.verdict import Verdict

SCRIPT = isvc(command=["bash", "-c", "N=$(nvidia-smi -L | wc -l)\nexec vllm serve m -tp ${N}"])


def test_with_warnings_appends_to_the_warnings_already_there_each_once_in_order() -> None:
    verdict = Verdict.allow().with_warnings(["a", "b"]).with_warnings(["c", "a"]).with_warnings([])
    assert verdict.warnings == ("a", "b", "c")


def test_with_warnings_keeps_the_patch_message_and_changed_fields() -> None:
    patched = Verdict.patched([{"op": "add", "path": "/x", "value": 1}], ("command",)).with_warnings(["w"])
    assert (patched.allowed, patched.patch, patched.changed, patched.warnings) == (
        True, ({"op": "add", "path": "/x", "value": 1},), ("command",), ("w",))
    denied = Verdict.deny("no: fix it").with_warnings(["w"])
    assert (denied.allowed, denied.message, denied.warnings) == (False, "no: fix it", ("w",))


def test_a_verdict_with_an_empty_patch_has_no_patch_in_its_answer() -> None:
    answer = build_response("admission.k8s.io/v1", "u", Verdict.patched([], ()))
    assert answer["response"] == {"uid": "u", "allowed": True}


def test_changing_what_a_verdict_returns_cannot_change_it_or_the_next_answer() -> None:
    first = mutate(copy.deepcopy(SCRIPT))
    expected_patch, expected_warnings = copy.deepcopy(first.patch), first.warnings
    expected_answer = build_response("admission.k8s.io/v1", "u", first)
    assert expected_patch and expected_warnings  # something to tamper with

    for op in first.patch:
        op["value"] = "tampered"
    first.patch[0].clear()
    answer = build_response("admission.k8s.io/v1", "u", first)
    answer["response"]["warnings"].append("tampered")  # type: ignore[index]
    with pytest.raises(AttributeError):  # the fields cannot be set
        first.warnings = ("tampered",)  # type: ignore[misc]

    assert (first.patch, first.warnings) == (expected_patch, expected_warnings)
    assert build_response("admission.k8s.io/v1", "u", first) == expected_answer
    again = mutate(copy.deepcopy(SCRIPT))
    assert (again.patch, again.warnings) == (expected_patch, expected_warnings)
    assert build_response("admission.k8s.io/v1", "u", again) == expected_answer


def test_a_verdict_shares_nothing_with_the_object_it_was_made_from() -> None:
    obj = copy.deepcopy(SCRIPT)
    verdict = mutate(obj)
    mutated = apply(SCRIPT, verdict)
    obj["spec"]["predictor"]["model"]["command"].append("--tampered")
    obj["metadata"]["annotations"].clear()
    assert apply(SCRIPT, verdict) == mutated


def test_the_answers_patch_is_the_verdicts_patch_as_rfc_6902_json() -> None:
    verdict = mutate(copy.deepcopy(SCRIPT))
    response = build_response("admission.k8s.io/v1", "u", verdict)["response"]
    assert isinstance(response, dict) and response["patchType"] == "JSONPatch"
    assert tuple(json.loads(base64.b64decode(response["patch"]))) == verdict.patch
