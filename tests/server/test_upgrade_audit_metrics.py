"""The server's periodic audit with `--audit-vllm-version`: the upgrade-readiness gauge beside the audit's own.

The cluster view's caches are filled as its watches fill them (key -> object); no API server is needed to audit
what they hold (tests/e2e/test_audit_e2e.py runs the same against a real one)."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.core.test_upgrade_audit import objects
from webhook.cluster.kubecache import ClusterView
from webhook.server.app import ServerState, audit_once, create_app


def _state(target: tuple[int, ...] | None) -> ServerState:
    cluster = ClusterView(client.ApiClient(), workloads=True)
    cluster.namespaces.items["ml"] = {}
    isvcs = next(c for c in cluster.workloads if c.name == "inferenceservices")
    for obj in objects():
        isvcs.items[f"ml/{obj['metadata']['name']}"] = obj
    state = ServerState(cluster=cluster, audit_interval=60, audit_target=target)
    create_app(state)
    return state


def _samples(state: ServerState, name: str) -> list[Any]:
    families = text_string_to_metric_families(state.metrics.render().decode())
    return [s for f in families if f.name == name for s in f.samples]


def test_the_upgrade_gauge_counts_the_objects_that_would_differ_on_the_target_by_their_verdict_then() -> None:
    state = _state((0, 11, 0))
    audit_once(state)
    upgrade = {(s.labels["kind"], s.labels["result"], s.labels["target"]): s.value
               for s in _samples(state, "ep_webhook_audit_upgrade_objects")}
    assert upgrade == {("InferenceService", "change", "0.11.0"): 1, ("InferenceService", "deny", "0.11.0"): 1}
    normal = {(s.labels["result"]): s.value for s in _samples(state, "ep_webhook_audit_objects")}
    assert normal == {"compliant": 5} and all("target" not in s.labels
                                              for s in _samples(state, "ep_webhook_audit_objects"))


def test_without_a_target_there_is_no_upgrade_series() -> None:
    state = _state(None)
    audit_once(state)
    assert _samples(state, "ep_webhook_audit_upgrade_objects") == []
    assert _samples(state, "ep_webhook_audit_objects")
