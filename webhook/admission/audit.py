"""Audit: the decision the webhook would make on an UPDATE of every existing object.

Admission sees an object only when it is written; objects created before the
webhook was installed, before a namespace moved to `enforce`, or while the
webhook was down are never checked. The audit runs the same engine over the
objects as they are now, with the current policy, namespace labels and
runtimes, and reports one result per object. Pure: listing objects is the
caller's job (the CLI lists them through the API; the server uses its
watched caches). Objects are isolated: one the webhook fails on is reported
as an `error` finding, and every other object is still audited.

Upgrade readiness (`target`): the same audit as if every object's vLLM were the target release (over its
`ep.vllm-version` and its image), reporting only the objects whose verdict would differ from today's: denied
then (a flag or backend the target refuses), or patched otherwise (a flag renamed, an env the target ignores).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from webhook.admission.kinds import KINDS, mutate, running_ep
from webhook.core.policy import LabelsUnknown, Policy
from webhook.kserve.selection import Runtimes
from webhook.core.dra import Templates
from webhook.core.options import Options
from webhook.core.verdict import Verdict
from webhook.vllm.releases import Version, show

Result = Literal["compliant", "change", "deny", "error"]
RESULTS: tuple[Result, ...] = ("compliant", "change", "deny", "error")
"""What the webhook would do to an object: nothing, patch it, deny it; `error`: it failed on the object (a bug)."""


@dataclass(frozen=True)
class Finding:
    """One object's result: what the webhook would do to it now."""

    kind: str
    api_version: str
    namespace: str
    name: str
    ep: bool  # EP is on as the object runs now
    result: Result
    message: str
    changes: tuple[str, ...]
    uid: str = ""  # metadata.uid, for the reports' object references ("" when absent)

    def as_json(self) -> dict[str, object]:
        """The `-o json` form of a finding."""
        return {
            "kind": self.kind,
            "apiVersion": self.api_version,
            "namespace": self.namespace,
            "name": self.name,
            "ep": self.ep,
            "result": self.result,
            "message": self.message,
            "changes": list(self.changes),
        }


def _meta(obj: Mapping[str, object]) -> tuple[str, str]:
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _uid(obj: Mapping[str, object]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("uid") or "") if isinstance(metadata, dict) else ""


def finding(
    obj: dict[str, object],
    policy: Policy,
    labels: Mapping[str, str] | None,
    runtimes: Runtimes | None,
    templates: Templates | None = None,
    configs: Mapping[str, Mapping[str, object]] | None = None,
    target: Version | None = None,
) -> Finding | None:
    """The finding for one object; `labels` None when its namespace's labels are unknown; `templates` its
    namespace's ResourceClaimTemplates and `configs` its LLMInferenceServiceConfigs (None: unknown). With a
    `target` release, the finding only when the verdict for it differs from today's (`_upgrade`), else None."""
    namespace, name = _meta(obj)
    kind, api_version = str(obj.get("kind") or ""), str(obj.get("apiVersion") or "")
    ep, uid = running_ep(obj), _uid(obj)
    try:
        options = policy.options_for(namespace, labels)
    except LabelsUnknown:
        if target is not None:
            return None  # undecided today and on the target alike
        return Finding(kind, api_version, namespace, name, ep, "deny",
                       f"the labels of namespace {namespace!r} could not be read, and the policy selects by label",
                       (), uid)
    verdict = mutate(obj, options, runtimes, templates, configs)
    if target is not None:
        return _upgrade(obj, options, runtimes, templates, configs, target, verdict, ep, uid)
    if not verdict.allowed:
        return Finding(kind, api_version, namespace, name, ep, "deny", verdict.message, (), uid)
    if verdict.patch:
        return Finding(kind, api_version, namespace, name, ep, "change", "; ".join(verdict.warnings),
                       verdict.changed, uid)
    return Finding(kind, api_version, namespace, name, ep, "compliant", "; ".join(verdict.warnings), (), uid)


def _result(verdict: Verdict) -> Result:
    return "deny" if not verdict.allowed else "change" if verdict.patch else "compliant"


def _upgrade(obj: dict[str, object], options: Options, runtimes: Runtimes | None, templates: Templates | None,
             configs: Mapping[str, Mapping[str, object]] | None, target: Version, today: Verdict, ep: bool,
             uid: str) -> Finding | None:
    """The object's finding if its runtime moved to vLLM `target`, when that verdict differs from `today`'s
    (allowed or not, or another patch); its result is the verdict then, its message says what changes."""
    then = mutate(obj, replace(options, vllm_version=target, vllm_version_overrides=True), runtimes, templates,
                  configs)
    if then.allowed == today.allowed and then.patch == today.patch:
        return None
    namespace, name = _meta(obj)
    kind, api_version = str(obj.get("kind") or ""), str(obj.get("apiVersion") or "")
    result = _result(then)
    said = then.message if not then.allowed else "; ".join(then.warnings) or "the webhook would change nothing"
    message = f"today {_result(today)}; on vLLM {show(target)} {result}: {said}"
    return Finding(kind, api_version, namespace, name, ep, result, message, then.changed, uid)


def run(
    objects: Iterable[dict[str, object]],
    policy: Policy,
    labels_of: Callable[[str], Mapping[str, str] | None],
    runtimes_for: Callable[[str], Runtimes] | None,
    templates_for: Callable[[str], Templates] | None = None,
    configs_for: Callable[[str], Mapping[str, Mapping[str, object]] | None] | None = None,
    target: Version | None = None,
) -> list[Finding]:
    """Findings for every InferenceService and LLMInferenceService among `objects`, sorted by namespace, kind, name;
    with a `target` vLLM release, only for those whose verdict would differ on it (see `finding`)."""
    findings = []
    for obj in objects:
        if obj.get("kind") not in KINDS:
            continue
        try:
            namespace, _ = _meta(obj)
            found = finding(obj, policy, labels_of(namespace), runtimes_for(namespace) if runtimes_for else None,
                            templates_for(namespace) if templates_for else None,
                            configs_for(namespace) if configs_for else None, target)
        except Exception as e:  # noqa: BLE001 - one object the webhook fails on must not hide every other one
            found = failed(obj, e)
        if found is not None:
            findings.append(found)
    return sorted(findings, key=lambda f: (f.namespace, f.kind, f.name))


def failed(obj: Mapping[str, object], error: Exception) -> Finding:
    """The `error` finding for an object the audit raised `error` on (a bug of the webhook: report it)."""
    try:
        namespace, name = _meta(obj)
        kind, api_version = str(obj.get("kind") or ""), str(obj.get("apiVersion") or "")
    except Exception:  # noqa: BLE001 - metadata that cannot even be shown
        namespace, name, kind, api_version = "", "", "", ""
    detail = str(error)
    detail = detail if len(detail) <= 120 else detail[:119] + "…"
    return Finding(kind, api_version, namespace, name, False, "error",
                   f"the webhook failed on this object ({type(error).__name__}: {detail}); report it as a bug", ())


def counts(findings: Iterable[Finding]) -> dict[tuple[str, str, str], int]:
    """How many objects per (namespace, kind, result), for the server's gauges."""
    out: dict[tuple[str, str, str], int] = {}
    for f in findings:
        key = (f.namespace, f.kind, f.result)
        out[key] = out.get(key, 0) + 1
    return out
