"""The webhook's Prometheus metrics, with the ecosystem's client library.

Each app owns a `Metrics` and its registry (nothing is registered in
prometheus_client's global registry), so two apps in one process, as in the
tests, count separately. Besides the webhook's own series it carries the
standard process, platform and GC collectors (`process_resident_memory_bytes`,
`process_cpu_seconds_total`, `process_open_fds`, `python_gc_*`, ...) that
dashboards and alerts for Python services expect.

The per-review cost is one counter increment and one histogram observation;
the labelled counters are looked up once per (operation, outcome), of which
there are a handful.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds of the review latency histogram, in seconds: reviews take about a millisecond."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The text format every Prometheus version reads; `generate_latest` writes it for names like ours."""
Read = Callable[[], float]
"""A value read at scrape time."""


class _ReadAtScrape(Collector):
    """Values owned by other parts (reload counts, certificate expiry, cache state), read when scraped."""

    def __init__(self) -> None:
        self.gauges: dict[str, tuple[str, Read]] = {}
        self.counters: dict[str, tuple[str, Read]] = {}
        self.infos: dict[str, tuple[str, str, Callable[[], str]]] = {}

    def collect(self) -> Iterable[Metric]:
        for name, (help_text, read) in sorted(self.gauges.items()):
            yield GaugeMetricFamily(name, help_text, value=read())
        for name, (help_text, label, read_label) in sorted(self.infos.items()):
            family = GaugeMetricFamily(name, help_text, labels=(label,))
            family.add_metric((read_label(),), 1.0)
            yield family
        for name, (help_text, read) in sorted(self.counters.items()):
            yield CounterMetricFamily(name, help_text, value=read())


class Metrics:
    """One app's metrics: reviews by operation and outcome, review latency, and values read at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._reviews = Counter("ep_webhook_reviews", "Admission reviews answered, by operation and outcome.",
                                ("operation", "outcome"), registry=self.registry)
        self._duration = Histogram("ep_webhook_review_duration_seconds", "Time to answer one admission review.",
                                   buckets=BUCKETS, registry=self.registry)
        self._by_outcome: dict[tuple[str, str], Counter] = {}
        self._audit_objects = Gauge("ep_webhook_audit_objects",
                                    "Objects by what the webhook would do to them now (compliant, change, deny, error), "
                                    "from the last audit.", ("namespace", "kind", "result"), registry=self.registry)
        self._upgrade_objects = Gauge("ep_webhook_audit_upgrade_objects",
                                      "Objects whose verdict would differ if their runtime ran vLLM `target` "
                                      "(--audit-vllm-version), by the verdict then (change, deny, compliant, error), "
                                      "from the last audit.", ("namespace", "kind", "result", "target"),
                                      registry=self.registry)
        self._audit_last_run = Gauge("ep_webhook_audit_last_run_timestamp_seconds",
                                     "When the last audit finished, Unix time (0: none yet).", registry=self.registry)
        self._read = _ReadAtScrape()
        self.registry.register(self._read)

    def observe(self, operation: str, outcome: str, seconds: float) -> None:
        """Count one answered review (callers keep `operation` to a fixed set) and its latency."""
        key = (operation, outcome)
        counter = self._by_outcome.get(key)
        if counter is None:
            counter = self._by_outcome[key] = self._reviews.labels(operation, outcome)
        counter.inc()
        self._duration.observe(seconds)

    def audited(self, counts: Mapping[tuple[str, str, str], int], finished: float) -> None:
        """Replace the audit gauges with one run's counts by (namespace, kind, result)."""
        self._audit_objects.clear()
        for (namespace, kind, result), n in counts.items():
            self._audit_objects.labels(namespace, kind, result).set(n)
        self._audit_last_run.set(finished)

    def upgrade_audited(self, counts: Mapping[tuple[str, str, str], int], target: str) -> None:
        """Replace the upgrade-readiness gauge with one run's counts by (namespace, kind, result) for `target`."""
        self._upgrade_objects.clear()
        for (namespace, kind, result), n in counts.items():
            self._upgrade_objects.labels(namespace, kind, result, target).set(n)

    def gauge(self, name: str, help_text: str, read: Read) -> None:
        """Expose `read()` as gauge `name`, called at every scrape."""
        self._read.gauges[name] = (help_text, read)

    def info(self, name: str, help_text: str, label: str, read: Callable[[], str]) -> None:
        """Expose gauge `name` with value 1 and label `label` set to `read()`, called at every scrape."""
        self._read.infos[name] = (help_text, label, read)

    def counter(self, name: str, help_text: str, read: Read) -> None:
        """Expose `read()`, a count that only goes up, as counter `name` (which ends in `_total`)."""
        self._read.counters[name] = (help_text, read)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything in this app's registry."""
        return generate_latest(self.registry)
