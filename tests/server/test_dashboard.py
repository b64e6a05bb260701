"""The chart's Grafana dashboard asks only for series the server exports.

The server here is the real app (`create_app`) with every part that registers
metrics: a policy file, cluster caches, certificates and the report writer.
Nothing connects to an API server: the families are registered when the app
is made, and the exposition lists each one (with HELP and TYPE) even before it
has samples.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.chart.helmtool import CHART
from webhook.cli.main import load_policy
from webhook.cluster.kubecache import ClusterView
from webhook.cluster.reports import ReportWriter
from webhook.server.app import ServerState, create_app
from webhook.tls import certs
from webhook.tls.context import CertReloader
from webhook.tls.reloader import Reloading

DASHBOARD = CHART / "dashboards" / "vllm-ep-webhook.json"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",), "untyped": ("",)}
# PromQL words that look like names: functions are followed by "(", these are not always
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
            "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (Grafana's $variables and label matchers left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals: label values, regexes
    text = re.sub(r"\{[^{}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", "", text)  # range and subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", "", text)  # label lists
    assert text.count("(") == text.count(")"), f"unbalanced parentheses in {expr!r}"
    names = set()
    for m in re.finditer(r"(?<![\w.$])\$?[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group()
        following = text[m.end():].lstrip()
        if word.startswith("$") or word.lower() in KEYWORDS or following.startswith("("):
            continue
        names.add(word)
    return names


def test_metric_names_are_found_in_the_expressions_a_dashboard_uses() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job",x="y{z}"}[$__rate_interval]))) '
            '/ on (pod) group_left max without (instance) (b_total offset 5m) > bool 0')
    assert metric_names(expr) == {"a_bucket", "b_total"}
    with pytest.raises(AssertionError):
        metric_names("sum(rate(a_total[5m])")


def exported(tmp_path: Path) -> set[str]:
    """Every series name the server's /metrics can show: each family's name with its type's suffixes."""
    certs.write_bundle(tmp_path, certs.generate(["localhost"]))
    policy = tmp_path / "policy.yaml"
    policy.write_text("defaults: {mode: optIn}\n")
    api = client.ApiClient()
    state = ServerState(policy=Reloading(str(policy), load_policy, "policy"), cluster=ClusterView(api, workloads=True),
                        reloader=CertReloader(tmp_path), reports=ReportWriter(api), audit_interval=60)
    create_app(state)
    state.metrics.observe("CREATE", "mutated", 0.001)
    families = text_string_to_metric_families(state.metrics.render().decode())
    return {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_every_dashboard_query_names_a_metric_the_server_exports(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exported(tmp_path)
    queries = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    variables = [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    assert len(queries) > 15
    for expr in queries + variables:
        expr = re.sub(r"^label_values\((.*), *\w+\)$", r"\1", expr)
        used = metric_names(expr)
        assert used, expr
        assert used <= names, f"{sorted(used - names)} in {expr!r}: not exported"
    asked = {n for q in queries for n in metric_names(q)}
    for wanted in ("ep_webhook_reviews_total", "ep_webhook_review_duration_seconds_bucket",
                   "ep_webhook_certificate_not_after_seconds", "ep_webhook_policy_reloads_total",
                   "ep_webhook_certificate_reloads_total", "ep_webhook_audit_objects", "process_resident_memory_bytes"):
        assert wanted in asked, f"the dashboard has no panel on {wanted}"


def test_every_panel_has_a_unique_id_a_place_and_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for p in panels(dashboard):
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
