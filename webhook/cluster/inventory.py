"""Listing what the audit needs from the Kubernetes API, page by page.

InferenceServices and LLMInferenceServices (all namespaces, or one), the
labels of their namespaces, the (Cluster)ServingRuntimes and the
ResourceClaimTemplates (resource.k8s.io/v1), as the caller's
kubeconfig may read them. Lists are paginated with `limit`/`continue` so that
large clusters never come back in one response. A kind whose CRD is not
installed lists as empty; namespaces the caller may not read have unknown
labels (the audit then reports rules that need them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from webhook.kserve.api import CLUSTER_SERVING_RUNTIMES, GROUP, LLM_INFERENCE_SERVICE_CONFIGS, SERVING_RUNTIMES, WORKLOADS
from webhook.kserve.servingruntime import RuntimeSpec, spec_from_object
from webhook.kserve.selection import Runtimes, for_namespace as scoped

PAGE = 250


@dataclass
class Snapshot:
    """What the audit reads, as listed now."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    labels_readable: bool = True
    runtimes: list[RuntimeSpec] = field(default_factory=list)
    claim_templates: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """ResourceClaimTemplates by namespace, then name."""
    llm_configs: dict[str, dict[str, dict[str, Any]]] | None = field(default_factory=dict)
    """LLMInferenceServiceConfigs by namespace, then name (None: not readable)."""

    def labels_of(self, namespace: str) -> dict[str, str] | None:
        """The namespace's labels; None when they could not be read."""
        return self.labels.get(namespace) if self.labels_readable else None

    def runtimes_for(self, namespace: str) -> Runtimes:
        """The runtimes KServe could use for an object in `namespace`."""
        return scoped(self.runtimes, namespace)

    def claim_templates_for(self, namespace: str) -> dict[str, dict[str, Any]]:
        """The ResourceClaimTemplates of `namespace` by name."""
        return self.claim_templates.get(namespace, {})

    def llm_configs_for(self, namespace: str) -> dict[str, dict[str, Any]] | None:
        """The LLMInferenceServiceConfigs of `namespace` by name (None: not readable)."""
        return None if self.llm_configs is None else self.llm_configs.get(namespace, {})


def _pages(call: Callable[..., Any], **kw: Any) -> Iterator[dict[str, Any]]:
    token = None
    while True:
        page = (call(limit=PAGE, _continue=token, _request_timeout=30, **kw) if token
                else call(limit=PAGE, _request_timeout=30, **kw))
        yield from page.get("items", [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return


def snapshot(api_client: Any, namespace: str | None, progress: Callable[[int], None] | None = None) -> Snapshot:
    """List everything the audit needs; ApiException for errors other than a missing CRD or unreadable labels."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom = client.CustomObjectsApi(api_client)
    core: Any = client.CoreV1Api(api_client)
    out = Snapshot()

    def listing(version: str, plural: str) -> Iterator[dict[str, Any]]:
        if namespace:
            return _pages(custom.list_namespaced_custom_object, group=GROUP, version=version, namespace=namespace,
                          plural=plural)
        return _pages(custom.list_cluster_custom_object, group=GROUP, version=version, plural=plural)

    for version, plural in WORKLOADS:
        try:
            for obj in listing(version, plural):
                out.objects.append(obj)
                if progress is not None:
                    progress(len(out.objects))
        except ApiException as e:
            if e.status != 404:
                raise
    try:
        if namespace:
            ns = core.read_namespace(namespace, _request_timeout=30)
            out.labels[namespace] = dict(ns.metadata.labels or {})
        else:
            token = None
            while True:
                page = (core.list_namespace(limit=PAGE, _continue=token, _request_timeout=30) if token
                        else core.list_namespace(limit=PAGE, _request_timeout=30))
                for ns in page.items:
                    out.labels[ns.metadata.name] = dict(ns.metadata.labels or {})
                token = page.metadata._continue
                if not token:
                    break
    except ApiException as e:
        if e.status != 403:
            raise
        out.labels_readable = False
    for (version, plural), kind in ((SERVING_RUNTIMES, "ServingRuntime"),
                                    (CLUSTER_SERVING_RUNTIMES, "ClusterServingRuntime")):
        try:
            items = (listing(version, plural) if kind == "ServingRuntime"
                     else _pages(custom.list_cluster_custom_object, group=GROUP, version=version, plural=plural))
            for obj in items:
                spec = spec_from_object(kind, obj)
                if spec is not None:
                    out.runtimes.append(spec)
        except ApiException as e:
            if e.status not in (403, 404):
                raise
    try:
        version, plural = LLM_INFERENCE_SERVICE_CONFIGS
        for obj in listing(version, plural):
            meta = obj.get("metadata") or {}
            assert out.llm_configs is not None
            out.llm_configs.setdefault(str(meta.get("namespace", "")), {})[str(meta.get("name", ""))] = obj
    except ApiException as e:
        if e.status == 403:
            out.llm_configs = None  # unreadable: presets by reference are unknown
        elif e.status != 404:
            raise
    resource: Any = client.ResourceV1Api(api_client)
    try:
        token = None
        while True:
            kw: dict[str, Any] = {"limit": PAGE, "_request_timeout": 30, **({"_continue": token} if token else {})}
            page = (resource.list_namespaced_resource_claim_template(namespace, **kw) if namespace
                    else resource.list_resource_claim_template_for_all_namespaces(**kw))
            for item in page.items:
                body = api_client.sanitize_for_serialization(item)
                out.claim_templates.setdefault(item.metadata.namespace, {})[item.metadata.name] = body
            token = page.metadata._continue
            if not token:
                break
    except ApiException as e:
        if e.status not in (403, 404):  # unreadable or not served (before Kubernetes 1.34): DRA objects say so
            raise
    return out
