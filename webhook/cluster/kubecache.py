"""Namespace labels, ServingRuntimes and ResourceClaimTemplates, listed once and then watched.

The policy needs namespace labels, the runtime check needs runtimes and GPUs
claimed through DRA need the namespace's ResourceClaimTemplates on every review; fetching them per request would put the API server on the
admission hot path. Each cache runs in a daemon thread: list, then watch
from the list's resourceVersion, re-list on expiry or error with backoff.

While the API server is unreachable the caches keep the last state they saw.
A namespace the cache has never seen has unknown labels: a policy rule that
needs labels then denies with a "retry" message rather than guessing (fail
closed), and rules by name still work. The server reports ready only after
each cache completed its first list.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from webhook.kserve.api import CLUSTER_SERVING_RUNTIMES, GROUP, LLM_INFERENCE_SERVICE_CONFIGS, SERVING_RUNTIMES, WORKLOADS
from webhook.kserve.servingruntime import RuntimeSpec, spec_from_object
from webhook.kserve.selection import Runtimes

log = logging.getLogger("webhook.kubecache")


class Cache:
    """One watched collection: key -> value, filled by `run()` in a thread."""

    def __init__(self, name: str, list_call: Callable[..., Any], convert: Callable[[Any], tuple[str, Any] | None]) -> None:
        self.name = name
        self.list_call = list_call
        self.convert = convert
        self.items: dict[str, Any] = {}
        self.synced = threading.Event()
        self.errors = 0
        self.forbidden = False

    def _objects(self, listing: Any) -> Iterator[Any]:
        return iter(listing["items"] if isinstance(listing, dict) else listing.items)

    @staticmethod
    def _version(listing: Any) -> str:
        if isinstance(listing, dict):
            return str(listing.get("metadata", {}).get("resourceVersion", ""))
        return str(listing.metadata.resource_version or "")

    def run(self, stop: threading.Event) -> None:
        """List, then watch from the list's version; again on expiry or error, with backoff, until `stop`."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        backoff = 1.0
        while not stop.is_set():
            try:
                listing = self.list_call()
                fresh: dict[str, Any] = {}
                for obj in self._objects(listing):
                    entry = self.convert(obj)
                    if entry is not None:
                        fresh[entry[0]] = entry[1]
                self.items = fresh
                self.forbidden = False
                self.synced.set()
                backoff = 1.0
                w = watch.Watch()
                for event in w.stream(self.list_call, resource_version=self._version(listing), timeout_seconds=240):
                    if stop.is_set():
                        w.stop()
                        return
                    entry = self.convert(event["object"])
                    if entry is None:
                        continue
                    if event["type"] == "DELETED":
                        self.items.pop(entry[0], None)
                    else:
                        self.items[entry[0]] = entry[1]
            except ApiException as e:
                self.errors += 1
                self.forbidden = e.status == 403
                if e.status == 404:
                    # the resource type is not installed (e.g. no KServe CRDs yet): nothing to cache
                    self.items = {}
                    self.synced.set()
                log.warning("watch failed; retrying", extra={"fields": {"cache": self.name, "status": e.status}})
            except Exception as e:  # noqa: BLE001 - unreachable API server and friends: retry
                self.errors += 1
                log.warning("watch failed; retrying", extra={"fields": {"cache": self.name, "error": type(e).__name__}})
            if stop.wait(backoff):
                return
            backoff = min(backoff * 2, 30.0)


def _namespace_entry(obj: Any) -> tuple[str, dict[str, str]] | None:
    meta = obj.metadata
    return (meta.name, dict(meta.labels or {})) if meta is not None and meta.name else None


def _runtime_entry(kind: str) -> Callable[[Any], tuple[str, RuntimeSpec] | None]:
    def convert(obj: Any) -> tuple[str, RuntimeSpec] | None:
        spec = spec_from_object(kind, obj)
        if spec is None:
            return None
        namespace = obj.get("metadata", {}).get("namespace", "") if isinstance(obj, dict) else ""
        return (f"{namespace}/{spec.name}", spec)

    return convert


def _object_entry(obj: Any) -> tuple[str, dict[str, Any]] | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or not meta.get("name"):
        return None
    return (f"{meta.get('namespace', '')}/{meta['name']}", obj)


def _template_entry(api_client: Any) -> Callable[[Any], tuple[str, dict[str, Any]] | None]:
    def convert(obj: Any) -> tuple[str, dict[str, Any]] | None:
        meta = obj.metadata
        if meta is None or not meta.name:
            return None
        return (f"{meta.namespace}/{meta.name}", api_client.sanitize_for_serialization(obj))

    return convert


class _Scoped(Mapping[str, Mapping[str, object]]):
    """One namespace's entries of a cache keyed `namespace/name`, looked up by name without copying."""

    def __init__(self, items: dict[str, Any], namespace: str) -> None:
        self._items = items
        self._prefix = f"{namespace}/"

    def __getitem__(self, name: str) -> Mapping[str, object]:
        value = self._items[self._prefix + name]
        assert isinstance(value, dict)
        return value

    def __iter__(self) -> Iterator[str]:
        n = len(self._prefix)
        return iter([k[n:] for k in list(self._items) if k.startswith(self._prefix)])

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ClusterView:
    """The caches the server uses, and lookups shaped for the core.

    With `workloads`, InferenceServices and LLMInferenceServices are watched
    too, for the periodic audit.
    """

    def __init__(self, api_client: Any, workloads: bool = False) -> None:
        from kubernetes import client

        core = client.CoreV1Api(api_client)
        custom = client.CustomObjectsApi(api_client)
        self.namespaces = Cache("namespaces", core.list_namespace, _namespace_entry)
        self.runtimes = Cache(SERVING_RUNTIMES[1], _lister(custom, *SERVING_RUNTIMES), _runtime_entry("ServingRuntime"))
        self.cluster_runtimes = Cache(
            CLUSTER_SERVING_RUNTIMES[1], _lister(custom, *CLUSTER_SERVING_RUNTIMES), _runtime_entry("ClusterServingRuntime")
        )
        resource = client.ResourceV1Api(api_client)
        # resource.k8s.io/v1 (GA in Kubernetes 1.34); a cluster that does not serve it answers 404: nothing to cache
        self.claim_templates = Cache("resourceclaimtemplates", resource.list_resource_claim_template_for_all_namespaces,
                                     _template_entry(api_client))
        # presets in users' namespaces can replace KServe's own: the policy reads them (a 404 without the CRD)
        self.llm_configs = Cache(LLM_INFERENCE_SERVICE_CONFIGS[1], _lister(custom, *LLM_INFERENCE_SERVICE_CONFIGS),
                                 _object_entry)
        self.workloads: tuple[Cache, ...] = ()
        if workloads:
            self.workloads = tuple(Cache(plural, _lister(custom, version, plural), _object_entry)
                                   for version, plural in WORKLOADS)
        self.stop = threading.Event()

    @property
    def caches(self) -> tuple[Cache, ...]:
        """Every watched collection."""
        return (self.namespaces, self.runtimes, self.cluster_runtimes, self.claim_templates, self.llm_configs,
                *self.workloads)

    def objects(self) -> list[dict[str, Any]]:
        """Every watched InferenceService and LLMInferenceService, as last seen."""
        return [obj for cache in self.workloads for obj in list(cache.items.values())]

    def start(self) -> None:
        """Start one daemon thread per cache."""
        for cache in self.caches:
            threading.Thread(target=cache.run, args=(self.stop,), daemon=True, name=f"watch-{cache.name}").start()

    def synced(self) -> bool:
        """The caches admission needs (namespaces, runtimes, claim templates) have listed once: the server is ready."""
        return all(c.synced.is_set() for c in (self.namespaces, self.runtimes, self.cluster_runtimes,
                                                self.claim_templates, self.llm_configs))

    def workloads_synced(self) -> bool:
        """The audit's caches have listed once (never, while the API server refuses them)."""
        return all(c.synced.is_set() for c in self.workloads)

    def workloads_forbidden(self) -> list[str]:
        """The audit's caches the API server refuses to list (403): missing RBAC."""
        return [c.name for c in self.workloads if c.forbidden]

    def labels(self, namespace: str) -> dict[str, str] | None:
        """A namespace's labels as last seen; None when the namespace has not been seen."""
        value = self.namespaces.items.get(namespace)
        return dict(value) if isinstance(value, dict) else None

    def runtimes_for(self, namespace: str) -> Runtimes:
        """The ServingRuntimes of `namespace` and every ClusterServingRuntime, as last seen."""
        prefix = f"{namespace}/"
        return Runtimes(
            tuple(v for k, v in list(self.runtimes.items.items()) if k.startswith(prefix) and isinstance(v, RuntimeSpec)),
            tuple(v for v in list(self.cluster_runtimes.items.values()) if isinstance(v, RuntimeSpec)),
        )


    def claim_templates_for(self, namespace: str) -> Mapping[str, Mapping[str, object]]:
        """The ResourceClaimTemplates of `namespace` by name, as last seen (a live view, not a copy)."""
        return _Scoped(self.claim_templates.items, namespace)


    def llm_configs_for(self, namespace: str) -> Mapping[str, Mapping[str, object]]:
        """The LLMInferenceServiceConfigs of `namespace` by name, as last seen (a live view, not a copy)."""
        return _Scoped(self.llm_configs.items, namespace)


def _lister(custom: Any, version: str, plural: str) -> Callable[..., Any]:
    return lambda **kw: custom.list_cluster_custom_object(GROUP, version, plural, **kw)


def api_client(kubeconfig: str | None) -> Any:
    """A client for the given kubeconfig, else the in-cluster service account."""
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)
