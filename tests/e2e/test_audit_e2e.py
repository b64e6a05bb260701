"""`ep-webhook audit` against a real API server holding objects no webhook ever saw.

The namespaces here carry the label `e2e-policy: audit`, which keeps every
webhook registered by the other e2e tests away, so the objects are stored
exactly as written; the audit must then report what the webhook would do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.cluster import Cluster
from tests.e2e.test_policy_e2e import POLICY_READER_RULES, restricted_kubeconfig
from tests.helpers import isvc
from tests.server_harness import server_with_new_certs
from tests.cli.test_cli import EXE
from tests.kserve.test_llminferenceservice import llmisvc

POLICY = """
rules:
  - name: production
    namespaceSelector: {matchLabels: {ep-mode: enforce}}
    mode: enforce
    allowOptOut: false
  - name: no-ep
    namespaceSelector: {matchLabels: {ep-mode: forbid}}
    mode: forbid
"""


def audit(cluster: Cluster, policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [EXE] if EXE else [sys.executable, "-m", "webhook"]
    return subprocess.run([*cmd, "audit", "--kubeconfig", str(cluster.kubeconfig), "--policy", str(policy), *args],
                          capture_output=True, text=True, timeout=120)


def namespace(api: client.ApiClient, mode: str | None) -> str:
    name = f"audit-{mode or 'optin'}-{uuid.uuid4().hex[:6]}"
    labels = {"e2e-policy": "audit", **({"ep-mode": mode} if mode else {})}
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name, "labels": labels}})
    return name


def put(api: client.ApiClient, ns: str, name: str, obj: dict[str, Any]) -> None:
    obj["metadata"] = {"name": name, "annotations": obj["metadata"]["annotations"]}
    group, version = obj["apiVersion"].split("/")
    plural = "llminferenceservices" if obj["kind"] == "LLMInferenceService" else "inferenceservices"
    client.CustomObjectsApi(api).create_namespaced_custom_object(group, version, ns, plural, obj)


@pytest.fixture(scope="module")
def objects(api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Namespaces by purpose, each holding objects with a known expected result."""
    optin, enforced, forbidden, clean, upgrade = (namespace(api, m) for m in (None, "enforce", "forbid", None, None))
    configured = ["vllm", "serve", "m", "--enable-expert-parallel", "--tensor-parallel-size", "1",
                  "--data-parallel-size", "8"]
    put(api, optin, "plain", isvc(command=["vllm", "serve", "m"], enabled=None))
    put(api, optin, "already-ep", isvc(command=configured))
    put(api, optin, "needs-ep", isvc(command=["vllm", "serve", "m", "-tp", "8"]))
    put(api, optin, "one-gpu", isvc(command=["vllm", "serve", "m"], limits={"nvidia.com/gpu": "1"}))
    put(api, optin, "llm", llmisvc())
    put(api, enforced, "unannotated", isvc(command=["vllm", "serve", "m"], enabled=None))
    put(api, forbidden, "hand-written", isvc(command=configured, enabled=None))
    put(api, clean, "plain", isvc(command=["vllm", "serve", "m"], enabled=None))
    put(api, clean, "already-ep", isvc(command=configured))
    put(api, upgrade, "short-ep", isvc(command=[*configured[:3], "-ep", *configured[4:]]))  # -ep: vLLM 0.14+
    put(api, upgrade, "already-ep", isvc(command=configured))
    policy = tmp_path_factory.mktemp("audit") / "policy.yaml"
    policy.write_text(POLICY)
    return {"optin": optin, "enforced": enforced, "forbidden": forbidden, "clean": clean, "upgrade": upgrade,
            "policy": str(policy)}


def results(cluster: Cluster, objects: dict[str, str], ns: str) -> tuple[int, dict[str, dict[str, Any]]]:
    done = audit(cluster, Path(objects["policy"]), "-n", ns, "-o", "json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, {f["name"]: f for f in json.loads(done.stdout)}


def test_each_object_is_reported_as_the_webhook_would_decide(cluster: Cluster, objects: dict[str, str]) -> None:
    code, found = results(cluster, objects, objects["optin"])
    assert code == 1
    assert {n: (f["result"], f["ep"]) for n, f in found.items()} == {
        "plain": ("compliant", False),
        "already-ep": ("compliant", True),
        "needs-ep": ("change", False),
        "one-gpu": ("deny", False),
        "llm": ("change", False),
    }
    assert "replaced -tp 8 with 1" in found["needs-ep"]["message"]
    assert found["needs-ep"]["changes"] == ["spec.predictor.model.command",
                                            "metadata.annotations[vllm-ep-webhook.io/original]"]
    assert "at least 2 GPUs" in found["one-gpu"]["message"]
    assert found["llm"]["kind"] == "LLMInferenceService" and found["llm"]["apiVersion"].endswith("/v1alpha2")


def test_an_enforced_namespace_and_a_forbidding_label_are_reported(cluster: Cluster, objects: dict[str, str]) -> None:
    _, enforced = results(cluster, objects, objects["enforced"])
    assert enforced["unannotated"]["result"] == "change"
    _, forbidden = results(cluster, objects, objects["forbidden"])
    assert forbidden["hand-written"]["result"] == "deny" and forbidden["hand-written"]["ep"] is True
    assert "forbidden" in forbidden["hand-written"]["message"]


def test_a_compliant_namespace_exits_0_with_a_table_and_summary(cluster: Cluster, objects: dict[str, str]) -> None:
    done = audit(cluster, Path(objects["policy"]), "--namespace", objects["clean"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "KIND", "NAME", "EP", "RESULT", "MESSAGE"]
    assert [line.split()[2:5] for line in lines[1:3]] == [["already-ep", "on", "compliant"], ["plain", "off", "compliant"]]
    assert lines[-1] == "2 objects: 2 compliant, 0 change, 0 deny"


def test_all_namespaces_include_every_audited_object(cluster: Cluster, objects: dict[str, str]) -> None:
    done = audit(cluster, Path(objects["policy"]), "-o", "json")
    assert done.returncode == 1
    seen = {(f["namespace"], f["name"]) for f in json.loads(done.stdout)}
    assert {(objects["optin"], "needs-ep"), (objects["forbidden"], "hand-written"), (objects["clean"], "plain")} <= seen


def test_the_upgrade_audit_reports_only_what_would_differ_on_the_target_release(
    cluster: Cluster, objects: dict[str, str]
) -> None:
    ns = objects["upgrade"]
    assert results(cluster, objects, ns)[1].keys() == {"short-ep", "already-ep"}  # both compliant today
    older = audit(cluster, Path(objects["policy"]), "-n", ns, "--vllm-version", "0.11.0", "-o", "json")
    assert older.returncode == 1, older.stderr
    (found,) = json.loads(older.stdout)
    assert (found["name"], found["result"]) == ("short-ep", "change")
    assert found["message"].startswith("today compliant; on vLLM 0.11.0 change") and "-ep" in found["message"]
    newest = audit(cluster, Path(objects["policy"]), "-n", ns, "--vllm-version", "0.33.0")
    assert newest.returncode == 0, newest.stderr
    assert newest.stdout.splitlines()[-1] == "2 objects audited for vLLM 0.33.0: 0 would differ"


def test_a_bad_kubeconfig_or_unreachable_server_exits_2_without_a_traceback(
    cluster: Cluster, objects: dict[str, str], tmp_path: Path
) -> None:
    cmd = [EXE] if EXE else [sys.executable, "-m", "webhook"]
    missing = subprocess.run([*cmd, "audit", "--kubeconfig", str(tmp_path / "none")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "cannot use the kubeconfig" in missing.stderr
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(cluster.kubeconfig.read_text().replace(f":{cluster.api_port}", ":1"))
    done = subprocess.run([*cmd, "audit", "--kubeconfig", str(unreachable)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "cannot reach the API server" in done.stderr
    assert "Traceback" not in missing.stderr + done.stderr


AUDIT_READER_RULES = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["serving.kserve.io"],
     "resources": ["servingruntimes", "clusterservingruntimes", "llminferenceserviceconfigs", "inferenceservices", "llminferenceservices"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaimtemplates"], "verbs": ["get", "list", "watch"]},
]


def test_the_server_exports_the_same_audit_as_metrics_with_read_only_access(
    cluster: Cluster, api: client.ApiClient, objects: dict[str, str], tmp_path: Path
) -> None:
    kubeconfig = restricted_kubeconfig(cluster, api, "ep-webhook-auditor", AUDIT_READER_RULES)
    extra = ["--policy", objects["policy"], "--kubeconfig", str(kubeconfig), "--audit-interval", "1s",
             "--audit-vllm-version", "0.11.0"]
    with server_with_new_certs(tmp_path, extra) as server:
        deadline = time.monotonic() + 30
        while server.metrics().get("ep_webhook_audit_last_run_timestamp_seconds", 0) == 0:
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.5)
        metrics = server.metrics()

    def count(namespace: str, result: str, kind: str = "InferenceService") -> float:
        return metrics.get(f'ep_webhook_audit_objects{{kind="{kind}",namespace="{namespace}",result="{result}"}}', 0)

    optin = objects["optin"]
    assert (count(optin, "compliant"), count(optin, "change"), count(optin, "deny")) == (2, 1, 1)
    assert count(optin, "change", "LLMInferenceService") == 1
    assert count(objects["enforced"], "change") == 1 and count(objects["forbidden"], "deny") == 1
    assert count(objects["clean"], "compliant") == 2 and count(objects["clean"], "change") == 0
    assert metrics["ep_webhook_cluster_watch_errors_total"] == 0
    upgrade = {k: v for k, v in metrics.items() if k.startswith("ep_webhook_audit_upgrade_objects{")}
    assert upgrade[f'ep_webhook_audit_upgrade_objects{{kind="InferenceService",namespace="{objects["upgrade"]}",'
                   f'result="change",target="0.11.0"}}'] == 1
    assert not any("target" in k for k in metrics if k.startswith("ep_webhook_audit_objects{"))


def test_without_rbac_for_the_audit_the_server_is_still_ready_and_says_what_to_grant(
    cluster: Cluster, api: client.ApiClient, tmp_path: Path
) -> None:
    kubeconfig = restricted_kubeconfig(cluster, api, "ep-webhook-no-audit", POLICY_READER_RULES)
    extra = ["--kubeconfig", str(kubeconfig), "--audit-interval", "1s"]
    with server_with_new_certs(tmp_path, extra) as server:
        assert server.request("GET", "/readyz")[0] == 200
        deadline = time.monotonic() + 20
        while "audit waits" not in server.logs():
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.5)
        assert "--audit-interval 0" in server.logs()
        assert server.metrics()["ep_webhook_audit_last_run_timestamp_seconds"] == 0
