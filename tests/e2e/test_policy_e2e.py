"""Policy end to end: labelled namespaces, live reload, runtime lookup, least-privilege RBAC.

A second webhook server runs with a policy file and a kubeconfig whose user
has exactly the RBAC the chart grants for the policy (namespaces and
ServingRuntimes, read-only). Its configuration has no matchConditions (enforce
and forbid must see every InferenceService) and only selects namespaces
labelled `e2e-policy`, which the opt-in webhook of the other tests leaves out.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import new_client, webhook_configuration
from tests.e2e.test_admission import create, manifest, model
from tests.helpers import shipped_runtime_docs
from tests.server_harness import Server, server_with_new_certs
from tests.vllm_grammar import parse_launch

POLICY = """
defaults:
  mode: optIn
rules:
  - name: production
    namespaceSelector:
      matchLabels: {ep-mode: enforce}
    mode: enforce
    allowOptOut: false
  - name: lenient
    namespaceSelector:
      matchLabels: {ep-mode: enforce-opt-out}
    mode: enforce
    allowOptOut: true
  - name: no-ep
    namespaceSelector:
      matchLabels: {ep-mode: forbid}
    mode: forbid
"""
CONFIG = "vllm-ep-webhook-policy"
POLICY_READER_RULES = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["serving.kserve.io"], "resources": ["servingruntimes", "clusterservingruntimes", "llminferenceserviceconfigs"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaimtemplates"], "verbs": ["get", "list", "watch"]},
]


def restricted_kubeconfig(
    cluster: Cluster, api: client.ApiClient, user: str, rules: list[dict[str, Any]] = POLICY_READER_RULES
) -> Path:
    """A kubeconfig for `user`, who may do exactly what `rules` allow, cluster-wide."""
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_cluster_role({"metadata": {"name": user}, "rules": rules})
    rbac.create_cluster_role_binding({
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    })
    return cluster.user_kubeconfig(user, [])


@pytest.fixture(scope="module")
def policy_server(cluster: Cluster, api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("policy-webhook")
    policy_file = base / "policy.yaml"
    policy_file.write_text(POLICY)
    kubeconfig = restricted_kubeconfig(cluster, api, "ep-webhook-policy-reader")
    # admission alone: the audit, which needs more RBAC, is tested in test_audit_e2e
    args = ["--policy", str(policy_file), "--kubeconfig", str(kubeconfig), "--audit-interval", "0"]
    with server_with_new_certs(base, args) as server:
        server.policy_file = policy_file  # type: ignore[attr-defined]
        conf = webhook_configuration(f"https://127.0.0.1:{server.port}/mutate", server.ca().read_bytes())
        conf["metadata"]["name"] = CONFIG
        hook = conf["webhooks"][0]
        hook["name"] = "policy.vllm-ep-webhook.io"
        del hook["matchConditions"]
        hook["namespaceSelector"] = {"matchLabels": {"e2e-policy": "true"}}
        adm = client.AdmissionregistrationV1Api(api)
        adm.create_mutating_webhook_configuration(conf)
        time.sleep(2)
        try:
            yield server
        finally:
            adm.delete_mutating_webhook_configuration(CONFIG)


def labelled(api: client.ApiClient, mode: str) -> str:
    name = f"pol-{mode}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(
        {"metadata": {"name": name, "labels": {"e2e-policy": "true", "ep-mode": mode}}})
    return name


def create_eventually(api: client.ApiClient, ns: str, obj: dict[str, Any],
                      not_yet: str = "does not know yet") -> tuple[dict[str, Any], Any]:
    """The server learns new namespaces (and templates) through its watch: retry a denial saying `not_yet`
    briefly."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return create(api, ns, obj)
        except ApiException as e:
            if not_yet not in str(e.body) or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def denial(api: client.ApiClient, ns: str, obj: dict[str, Any]) -> str:
    deadline = time.monotonic() + 15
    while True:
        with pytest.raises(ApiException) as denied:
            create(api, ns, obj)
        message = str(json.loads(denied.value.body)["message"])
        if "does not know yet" not in message or time.monotonic() > deadline:
            return message
        time.sleep(0.3)


SERVE = ["vllm", "serve", "/mnt/models", "-tp", "8"]


def test_enforce_namespaces_get_ep_without_the_annotation(api: client.ApiClient, policy_server: Server) -> None:
    ns = labelled(api, "enforce")
    stored, _ = create_eventually(api, ns, manifest("enforced", SERVE, enabled=None))
    launched = parse_launch(model(stored)["command"])
    assert (launched.enable_expert_parallel, launched.tensor_parallel_size, launched.data_parallel_size) == (True, 1, 8)
    plain, headers = create_eventually(api, ns, manifest("sklearn", ["python", "-m", "sklearnserver"], enabled=None))
    assert model(plain)["command"] == ["python", "-m", "sklearnserver"]
    assert "EP not applied" in headers.get("Warning", "")


def test_opting_out_is_denied_or_honoured_per_rule(api: client.ApiClient, policy_server: Server) -> None:
    strict = labelled(api, "enforce")
    message = denial(api, strict, manifest("out", SERVE, enabled="false"))
    assert "opting out is not allowed" in message and "production" in message
    lenient = labelled(api, "enforce-opt-out")
    stored, _ = create_eventually(api, lenient, manifest("out", SERVE, enabled="false"))
    assert model(stored)["command"] == SERVE


def test_forbid_namespaces_deny_the_annotation_and_hand_written_flags(api: client.ApiClient, policy_server: Server) -> None:
    ns = labelled(api, "forbid")
    assert "forbidden" in denial(api, ns, manifest("asks", ["vllm", "serve", "m"]))
    assert "-ep" in denial(api, ns, manifest("sneaky", ["vllm", "serve", "m", "-ep"], enabled=None))
    stored, _ = create_eventually(api, ns, manifest("plain", ["vllm", "serve", "m"], enabled=None))
    assert model(stored)["command"] == ["vllm", "serve", "m"]


def test_a_policy_change_is_picked_up_while_serving_and_a_bad_one_is_ignored(api: client.ApiClient, policy_server: Server) -> None:
    ns = labelled(api, "enforce")
    policy_file: Path = policy_server.policy_file  # type: ignore[attr-defined]
    try:
        policy_file.write_text(POLICY.replace("mode: enforce\n    allowOptOut: false", "mode: forbid"))
        deadline = time.monotonic() + 10
        while True:
            try:
                create(api, ns, manifest(f"x{uuid.uuid4().hex[:6]}", ["vllm", "serve", "m"]))
            except ApiException as e:
                if "forbidden" in str(e.body):
                    break
            assert time.monotonic() < deadline, "policy change not applied within 10 s"
            time.sleep(0.5)
        failures_before = policy_server.metrics().get("ep_webhook_policy_reload_failures_total", 0)
        policy_file.write_text("defaults: {mode: sometimes}\n")
        time.sleep(2.5)
        assert policy_server.metrics()["ep_webhook_policy_reload_failures_total"] == failures_before + 1
        assert policy_server.request("GET", "/readyz")[0] == 200
        assert "forbidden" in denial(api, ns, manifest("still-forbidden", ["vllm", "serve", "m"]))
    finally:
        policy_file.write_text(POLICY)
        time.sleep(2)


def test_runtime_lookup_denies_a_runtime_whose_script_drops_args(api: client.ApiClient, policy_server: Server) -> None:
    ns = labelled(api, "enforce-opt-out")
    custom = client.CustomObjectsApi(api)
    for name, command in (
        ("vllm-forwarding", ["bash", "-c", 'exec vllm serve /mnt/models --port 8080 "$@"', "--"]),
        ("vllm-dropping", ["bash", "-c", "exec vllm serve /mnt/models --port 8080"]),
    ):
        custom.create_namespaced_custom_object("serving.kserve.io", "v1alpha1", ns, "servingruntimes", {
            "apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime", "metadata": {"name": name},
            "spec": {"supportedModelFormats": [{"name": "vllm", "autoSelect": True}],
                     "containers": [{"name": "kserve-container", "image": "vllm/vllm-openai:v0.11.0", "command": command}]},
        })
    time.sleep(1.5)  # the server's watch sees the new runtimes
    ok = manifest("fwd", None, args=["--max-model-len=4096"])
    model(ok)["runtime"] = "vllm-forwarding"
    stored, _ = create_eventually(api, ns, ok)
    assert "--data-parallel-size" in model(stored)["args"]
    bad = manifest("drop", None, args=["--max-model-len=4096"])
    model(bad)["runtime"] = "vllm-dropping"
    message = denial(api, ns, bad)
    assert 'does not forward "$@"' in message and "vllm-dropping" in message
    unknown = manifest("unknown", None)
    model(unknown)["runtime"] = "nowhere"
    _, headers = create_eventually(api, ns, unknown)
    assert "'nowhere' is unknown" in headers.get("Warning", "")
    # the runtime's image says which vLLM runs: 0.11.0 has no --all2all-backend flag, it reads the env
    old = manifest("old-vllm", None, args=["--max-model-len=4096"],
                   annotations={"ep.all2all-backend": "deepep_low_latency"})
    model(old)["runtime"] = "vllm-forwarding"
    stored, headers = create_eventually(api, ns, old)
    assert model(stored)["env"] == [{"name": "VLLM_ALL2ALL_BACKEND", "value": "deepep_low_latency"}]
    assert "--all2all-backend" not in model(stored)["args"]
    assert "VLLM_ALL2ALL_BACKEND=deepep_low_latency in spec.predictor.model (vLLM 0.11.0" in headers.get("Warning", "")


def test_the_policy_server_needs_no_more_than_read_access_to_namespaces_and_runtimes(
    cluster: Cluster, policy_server: Server
) -> None:
    user_api = new_client(cluster.kubeconfig.parent / "kubeconfig-ep-webhook-policy-reader")
    with pytest.raises(ApiException) as forbidden:
        client.CoreV1Api(user_api).list_namespaced_secret("default")
    assert forbidden.value.status == 403
    assert policy_server.metrics()["ep_webhook_cluster_cache_synced"] == 1
    assert policy_server.metrics().get("ep_webhook_cluster_watch_errors_total", 0) == 0


@pytest.fixture()
def shipped_cluster_runtimes(api: client.ApiClient) -> Iterator[None]:
    """KServe's LLM ClusterServingRuntimes (from ../shared) in the API server, for one test."""
    custom = client.CustomObjectsApi(api)
    docs = shipped_runtime_docs()
    for doc in docs:
        custom.create_cluster_custom_object("serving.kserve.io", "v1alpha1", "clusterservingruntimes", doc)
    try:
        time.sleep(1.5)  # the server's watch sees them
        yield
    finally:
        for doc in docs:
            custom.delete_cluster_custom_object("serving.kserve.io", "v1alpha1", "clusterservingruntimes",
                                                doc["metadata"]["name"])


def test_the_running_webhook_auto_selects_kserves_runtimes_and_applies_the_huggingfaceserver_rule(
    api: client.ApiClient, policy_server: Server, shipped_cluster_runtimes: None
) -> None:
    ns = labelled(api, "enforce-opt-out")
    hf = manifest("hf", None)
    model(hf)["modelFormat"] = {"name": "huggingface"}
    stored, headers = create_eventually(api, ns, hf)
    assert model(stored)["args"] == ["--enable-expert-parallel"]  # auto-selected kserve-huggingfaceserver
    assert "GPU count (8)" in headers.get("Warning", "")
    served = manifest("vllm-format", None, args=["--max-model-len=4096"])
    model(served)["modelFormat"] = {"name": "vLLM"}
    stored, headers = create_eventually(api, ns, served)
    ns_args = parse_launch(["vllm", "serve", "m", *model(stored)["args"]])  # kserve-vllmserver forwards args
    assert (ns_args.tensor_parallel_size, ns_args.data_parallel_size) == (1, 8)
    tp2 = manifest("hf-tp2", None, annotations={"ep.tensor-parallel-size": "2"})
    model(tp2)["modelFormat"] = {"name": "huggingface"}
    assert "huggingfaceserver always uses tensor parallel size = GPU count (8)" in denial(api, ns, tp2)
    multi = manifest("multi", None)
    model(multi)["modelFormat"] = {"name": "huggingface"}
    multi["spec"]["predictor"]["workerSpec"] = {"pipelineParallelSize": 2, "tensorParallelSize": 8}
    assert "spec.predictor.workerSpec" in denial(api, ns, multi)


def test_forbid_reads_the_llm_presets_of_the_users_namespace(api: client.ApiClient, policy_server: Server) -> None:
    """KServe merges a namespace's own LLMInferenceServiceConfig named by baseRefs (before KServe's own); the
    running webhook watches them and decides on what they hold."""
    from tests.kserve.test_llminferenceservice import llmisvc

    ns = labelled(api, "forbid")
    custom = client.CustomObjectsApi(api)

    def preset(name: str, args: list[str]) -> dict[str, Any]:
        return {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceServiceConfig",
                "metadata": {"name": name}, "spec": {"template": {"containers": [{"name": "main", "args": args}]}}}

    def create_llm(name: str, ref: str) -> None:
        obj = llmisvc(enabled=None)
        obj["metadata"] = {"name": name}
        obj["spec"]["baseRefs"] = [{"name": ref}]
        custom.create_namespaced_custom_object("serving.kserve.io", "v1alpha2", ns, "llminferenceservices", obj)

    custom.create_namespaced_custom_object("serving.kserve.io", "v1alpha2", ns, "llminferenceserviceconfigs",
                                           preset("team-ep", ["--enable-expert-parallel", "--data-parallel-size=8"]))
    custom.create_namespaced_custom_object("serving.kserve.io", "v1alpha2", ns, "llminferenceserviceconfigs",
                                           preset("team-plain", ["--max-model-len=4096"]))
    deadline = time.monotonic() + 15
    while True:  # the webhook learns new presets through its watch
        try:
            create_llm(f"probe-{int(time.monotonic() * 1000) % 100000}", "team-ep")
        except ApiException as e:
            message = str(json.loads(e.body)["message"])
            break
        assert time.monotonic() < deadline, "the preset with EP was never read"
        time.sleep(0.3)
    assert "forbidden" in message and "LLMInferenceServiceConfig team-ep" in message
    create_llm("plain", "team-plain")
