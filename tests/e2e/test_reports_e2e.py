"""The server's audit as policy reports, in the real report CRDs, with exactly the chart's RBAC.

CRDs: openreports.io (module github.com/openreports/reports-api) and wgpolicyk8s.io (Kyverno's
module), from scripts/report-crds.sh (Go module proxy, cached). The server runs as a user bound to
exactly the ClusterRole the chart renders by default (`audit.reports: auto`). Reports are read back as
`kubectl get policyreports -A` / `kubectl get reports -A` read them: a Table from the API server,
with the CRD's printer columns.

Order matters, and is the file's: first no report CRD at all, then only wgpolicyk8s.io (auto writes
PolicyReports), then openreports.io too (auto prefers Reports).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.chart.helmtool import Helm, helm_binary
from tests.e2e.cluster import ROOT, Cluster
from tests.e2e.conftest import install_crds
from tests.e2e.test_audit_e2e import namespace, put
from tests.e2e.test_policy_e2e import restricted_kubeconfig
from tests.helpers import isvc
from tests.kserve.test_llminferenceservice import llmisvc
from tests.server_harness import Server, server_with_new_certs
from webhook.admission.reports import OPENREPORTS, WGPOLICY, ReportApi

pytestmark = pytest.mark.e2e
T = TypeVar("T")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
CONFIGURED = ["vllm", "serve", "m", "--enable-expert-parallel", "--tensor-parallel-size", "1",
              "--data-parallel-size", "8"]
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")


@pytest.fixture(scope="module")
def report_crds() -> Path:
    script = ROOT / "scripts" / "report-crds.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_binary(), tmp_path_factory.mktemp("helm-home"))


def rendered_rules(helm: Helm, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rules of the ClusterRole the chart renders with `values`."""
    [role] = [o for o in helm.template(values) if o["kind"] == "ClusterRole"]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


@pytest.fixture(scope="module")
def chart_rules(helm: Helm) -> list[dict[str, Any]]:
    """The rules of the ClusterRole the chart renders with its default values (audit.reports: auto)."""
    rules = rendered_rules(helm)
    assert {"openreports.io", "wgpolicyk8s.io"} <= {g for r in rules for g in r["apiGroups"]}
    return rules


def until(read: Callable[[], T | None], what: str, server: Server, seconds: float = 40) -> T:
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if value is not None:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{server.logs()[-4000:]}"
        time.sleep(0.5)


def kubectl_get(api: client.ApiClient, report: ReportApi) -> dict[str, dict[str, Any]]:
    """`kubectl get <plural> -A`: the API server's Table, one row per report, by namespace, cells by column."""
    request = api.param_serialize("GET", f"/apis/{report.group}/{report.version}/{report.plural}",
                                  header_params={"Accept": TABLE}, auth_settings=["BearerToken"])
    response = api.call_api(*request)
    response.read()
    table = json.loads(response.data)
    assert table["kind"] == "Table"
    columns = [c["name"] for c in table["columnDefinitions"]]
    return {row["object"]["metadata"]["namespace"]: dict(zip(columns, row["cells"])) for row in table["rows"]}


def stored(api: client.ApiClient, report: ReportApi, ns: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            report.group, report.version, ns, report.plural, "vllm-ep-webhook")
        return obj
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["resources"][0]["name"]: r for r in report["results"]}


def serve(cluster: Cluster, api: client.ApiClient, rules: list[dict[str, Any]], user: str, tmp_path: Path,
          *args: str) -> Any:
    kubeconfig = restricted_kubeconfig(cluster, api, user, rules)
    return server_with_new_certs(tmp_path, ["--kubeconfig", str(kubeconfig), "--audit-interval", "1s", *args])


def test_without_a_report_crd_no_report_is_written_and_the_log_and_metric_say_so(
    cluster: Cluster, api: client.ApiClient, chart_rules: list[dict[str, Any]], tmp_path: Path
) -> None:
    with serve(cluster, api, chart_rules, "ep-webhook-reports-none", tmp_path) as server:
        until(lambda: server.metrics().get("ep_webhook_audit_last_run_timestamp_seconds") or None, "an audit", server)
        metrics = server.metrics()
        assert metrics['ep_webhook_audit_report_api{api="none"}'] == 1
        assert metrics["ep_webhook_audit_reports"] == 0 and metrics["ep_webhook_audit_report_failures_total"] == 0
        assert "no audit reports: the API server does not serve openreports.io/v1alpha1 or wgpolicyk8s.io/v1alpha2" \
            in server.logs()


def check_reports_follow_the_objects(
    cluster: Cluster, api: client.ApiClient, rules: list[dict[str, Any]], report: ReportApi, tmp_path: Path
) -> None:
    ns, gone = namespace(api, None), namespace(api, None)
    put(api, ns, "ready", isvc(command=CONFIGURED))
    put(api, ns, "needs-ep", isvc(command=["vllm", "serve", "m", "-tp", "8"]))
    put(api, ns, "one-gpu", isvc(command=["vllm", "serve", "m"], limits={"nvidia.com/gpu": "1"}))
    put(api, ns, "llm", llmisvc())
    put(api, gone, "plain", isvc(command=["vllm", "serve", "m"], enabled=None))
    custom = client.CustomObjectsApi(api)
    with serve(cluster, api, rules, f"ep-webhook-reports-{report.name}", tmp_path) as server:
        rows = until(lambda: (lambda t: t if ns in t and gone in t else None)(kubectl_get(api, report)),
                     f"{report.plural} in {ns} and {gone}", server)
        assert {k: rows[ns][k] for k in ("Pass", "Fail", "Warn", "Error", "Skip")} == \
            {"Pass": 1, "Fail": 1, "Warn": 2, "Error": 0, "Skip": 0}
        assert {k: rows[gone][k] for k in ("Pass", "Fail", "Warn")} == {"Pass": 1, "Fail": 0, "Warn": 0}

        first = stored(api, report, ns)
        assert first is not None and first["kind"] == report.kind
        assert first["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "vllm-ep-webhook"}
        found = results(first)
        assert {n: (r["result"], r["rule"]) for n, r in found.items()} == {
            "ready": ("pass", "ep-compliant"), "needs-ep": ("warn", "ep-would-change"),
            "one-gpu": ("fail", "ep-denied"), "llm": ("warn", "ep-would-change")}
        assert all(r["policy"] == "vllm-ep-webhook" for r in found.values())
        needs_ep = custom.get_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], "needs-ep")
        assert found["needs-ep"]["resources"] == [{
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "namespace": ns,
            "name": "needs-ep", "uid": needs_ep["metadata"]["uid"]}]
        assert "replaced -tp 8 with 1" in found["needs-ep"]["message"]
        assert "at least 2 GPUs" in found["one-gpu"]["message"]
        assert found["llm"]["resources"][0]["kind"] == "LLMInferenceService"

        # the user fixes one object and deletes the only one of the other namespace
        needs_ep["spec"]["predictor"]["model"]["command"] = CONFIGURED
        custom.replace_namespaced_custom_object(*ISVC[:2], ns, ISVC[2], "needs-ep", needs_ep)
        custom.delete_namespaced_custom_object(*ISVC[:2], gone, ISVC[2], "plain")
        fixed = until(lambda: (lambda r: r if r and results(r)["needs-ep"]["result"] == "pass" else None)(
            stored(api, report, ns)), "needs-ep to pass", server)
        assert results(fixed)["needs-ep"]["rule"] == "ep-compliant"
        assert fixed["summary"] == {"pass": 2, "fail": 1, "warn": 1, "error": 0, "skip": 0}
        assert fixed["metadata"]["uid"] == first["metadata"]["uid"], "replaced in place, not re-created"
        assert len(fixed["results"]) == 4, "replaced, never appended to"
        until(lambda: True if stored(api, report, gone) is None else None, f"the report of {gone} to go", server)
        rows = kubectl_get(api, report)
        assert gone not in rows and (rows[ns]["Pass"], rows[ns]["Warn"]) == (2, 1)

        # an unchanged namespace is not rewritten at every audit
        version = fixed["metadata"]["resourceVersion"]
        time.sleep(3)
        after = stored(api, report, ns)
        assert after is not None and after["metadata"]["resourceVersion"] == version
        metrics = server.metrics()
        assert metrics[f'ep_webhook_audit_report_api{{api="{report.api_version}"}}'] == 1
        assert metrics["ep_webhook_audit_reports"] >= 1 and metrics["ep_webhook_audit_report_failures_total"] == 0
        assert "report write refused" not in server.logs()


def test_policyreports_are_written_when_only_the_wgpolicy_crd_is_installed(
    cluster: Cluster, api: client.ApiClient, report_crds: Path, chart_rules: list[dict[str, Any]], tmp_path: Path
) -> None:
    install_crds(api, report_crds / "wgpolicy")
    check_reports_follow_the_objects(cluster, api, chart_rules, WGPOLICY, tmp_path)


def test_openreports_reports_are_preferred_once_their_crd_is_installed(
    cluster: Cluster, api: client.ApiClient, report_crds: Path, chart_rules: list[dict[str, Any]], tmp_path: Path
) -> None:
    install_crds(api, report_crds / "openreports")
    check_reports_follow_the_objects(cluster, api, chart_rules, OPENREPORTS, tmp_path)


def test_a_forced_api_is_written_with_the_narrower_rules_the_chart_grants_for_it(
    cluster: Cluster, api: client.ApiClient, report_crds: Path, helm: Helm, tmp_path: Path
) -> None:
    install_crds(api, report_crds / "wgpolicy")
    install_crds(api, report_crds / "openreports")  # both served: auto would write Reports
    rules = rendered_rules(helm, {"audit": {"reports": "wgpolicy"}})
    assert "openreports.io" not in {g for r in rules for g in r["apiGroups"]}
    ns = namespace(api, None)
    put(api, ns, "plain", isvc(command=["vllm", "serve", "m"], enabled=None))
    with serve(cluster, api, rules, "ep-webhook-reports-forced", tmp_path, "--audit-reports", "wgpolicy") as server:
        report = until(lambda: stored(api, WGPOLICY, ns), f"a PolicyReport in {ns}", server)
        assert report["summary"]["pass"] == 1 and stored(api, OPENREPORTS, ns) is None
        metrics = server.metrics()
        assert metrics['ep_webhook_audit_report_api{api="wgpolicyk8s.io/v1alpha2"}'] == 1
        assert metrics["ep_webhook_audit_report_failures_total"] == 0
