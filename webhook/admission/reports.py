"""Audit findings as policy report objects: one report per namespace, one result per object.

Platform teams read policy results from report objects that Kyverno, Kubewarden,
Trivy and others write, with tools such as Policy Reporter. Two APIs carry them:

- `openreports.io/v1alpha1` `Report` (namespaced; `ClusterReport` for cluster
  objects), the successor, written by Kyverno 1.15+. Schema: module
  github.com/openreports/reports-api v0.2.1, `config/crd/openreports.io_reports.yaml`
  (a top-level `source`; results with `policy` required, `rule`, `result`
  pass|fail|warn|error|skip, `message`, `resources` as object references,
  `properties` string to string, `timestamp` {seconds, nanos}; `summary` counts).
- `wgpolicyk8s.io/v1alpha2` `PolicyReport`, the Policy WG's original. Schema:
  module github.com/kyverno/kyverno v1.19.1, `config/crds/policyreport/
  wgpolicyk8s.io_policyreports.yaml`: the same results and summary, no top-level
  `source` (each result carries it).

InferenceServices and LLMInferenceServices are namespaced, so only the
namespaced kinds are written. Pure: building the objects; creating, replacing
and deleting them is webhook/cluster/reports.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from webhook.admission.audit import Finding, Result

POLICY = "vllm-ep-webhook"
"""The `policy` of every result, and the `source` of every report and result."""
REPORT_NAME = "vllm-ep-webhook"
"""The name of the one report the webhook keeps in each namespace."""
MANAGED_BY = ("app.kubernetes.io/managed-by", "vllm-ep-webhook")
"""The label on every report the webhook writes: how it finds its own reports again (a label selector)."""
CATEGORY = "vLLM Expert Parallel"
MAX_MESSAGE = 1024
"""Characters of a result's message kept: a report holds a whole namespace and must stay far below
etcd's 1.5 MiB object limit."""

MAX_RESULTS = 1000
"""Results kept in one report (about 550 bytes each): fail first, then warn, then pass. The summary still counts
every object. A namespace holding more objects than this would otherwise come near etcd's object limit."""

Status = Literal["pass", "fail", "warn", "error"]
STATUS: Mapping[Result, Status] = {"compliant": "pass", "change": "warn", "deny": "fail", "error": "error"}
"""The audit's result as a report result: compliant passes, would be changed warns, would be denied fails, and an
object the audit could not decide (the core raised on it) is an error."""
RULES: Mapping[Result, str] = {"compliant": "ep-compliant", "change": "ep-would-change", "deny": "ep-denied",
                               "error": "ep-audit-error"}
"""The rule name of each result: a fixed set, documented in docs/audit.md (stable: dashboards filter on it)."""


@dataclass(frozen=True)
class ReportApi:
    """One report API: where its namespaced report kind is served."""

    name: str  # the short name used by --audit-reports and the chart: "openreports" | "wgpolicy"
    group: str
    version: str
    kind: str
    plural: str
    has_source: bool  # the report itself has a top-level `source` field

    @property
    def api_version(self) -> str:
        """`group/version`, as in the objects' apiVersion."""
        return f"{self.group}/{self.version}"


OPENREPORTS = ReportApi("openreports", "openreports.io", "v1alpha1", "Report", "reports", True)
WGPOLICY = ReportApi("wgpolicy", "wgpolicyk8s.io", "v1alpha2", "PolicyReport", "policyreports", False)
APIS: tuple[ReportApi, ...] = (OPENREPORTS, WGPOLICY)
"""In order of preference: the first one the API server serves is written when the choice is `auto`."""
CHOICES = ("auto", "openreports", "wgpolicy", "none")
"""Values of --audit-reports (and the chart's audit.reports)."""


def by_namespace(findings: Iterable[Finding]) -> dict[str, list[Finding]]:
    """Findings grouped by namespace, in the order given (the audit sorts them)."""
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.namespace, []).append(f)
    return out


def _message(f: Finding) -> str:
    if f.message:
        text = f.message
    elif f.result == "change":
        text = f"the webhook would change {', '.join(f.changes)}"
    else:
        text = "the webhook would admit this object unchanged"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def result(f: Finding, seconds: int) -> dict[str, object]:
    """One report result for one finding, timestamped `seconds` (Unix time)."""
    resource: dict[str, str] = {"apiVersion": f.api_version, "kind": f.kind, "namespace": f.namespace,
                                "name": f.name}
    if f.uid:
        resource["uid"] = f.uid
    properties = {"ep": "on" if f.ep else "off"}
    if f.changes:
        properties["changes"] = ", ".join(f.changes)
    return {
        "policy": POLICY,
        "rule": RULES[f.result],
        "result": STATUS[f.result],
        "message": _message(f),
        "category": CATEGORY,
        "source": POLICY,
        "scored": True,
        "resources": [resource],
        "properties": properties,
        "timestamp": {"seconds": seconds, "nanos": 0},
    }


def summary(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts of pass, fail, warn and error (and skip: always 0) results."""
    out = {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0}
    for f in findings:
        out[STATUS[f.result]] += 1
    return out


def kept(findings: list[Finding]) -> list[Finding]:
    """The findings a report lists: all of them up to MAX_RESULTS, else the first MAX_RESULTS by error, fail, warn, pass
    (each group in the order given)."""
    if len(findings) <= MAX_RESULTS:
        return findings
    order = {"error": 0, "deny": 1, "change": 2, "compliant": 3}
    return sorted(findings, key=lambda f: order[f.result])[:MAX_RESULTS]


def report(api: ReportApi, namespace: str, findings: list[Finding], seconds: int) -> dict[str, object]:
    """The report of one namespace: every finding as a result, and the summary; `seconds` stamps the results."""
    body: dict[str, object] = {
        "apiVersion": api.api_version,
        "kind": api.kind,
        "metadata": {"name": REPORT_NAME, "namespace": namespace, "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
        "summary": summary(findings),
        "results": [result(f, seconds) for f in kept(findings)],
    }
    if api.has_source:
        body["source"] = POLICY
    return body


def same_content(stored: Mapping[str, object], wanted: Mapping[str, object]) -> bool:
    """True when a stored report already says what `wanted` says (results and summary, timestamps aside).

    An unchanged namespace is then not rewritten: its results keep the time they were first found.
    """
    def strip(results: object) -> list[object]:
        if not isinstance(results, list):
            return []
        return [{k: v for k, v in r.items() if k != "timestamp"} if isinstance(r, dict) else r for r in results]

    labels = stored.get("metadata")
    labels = labels.get("labels") if isinstance(labels, dict) else None
    return (strip(stored.get("results")) == strip(wanted.get("results"))
            and stored.get("summary") == wanted.get("summary")
            and isinstance(labels, dict) and labels.get(MANAGED_BY[0]) == MANAGED_BY[1])
