"""Prometheus text-format metrics, without a client library.

Only what the webhook exposes: review counts by operation and outcome, a
latency histogram, certificate expiry and reload counts. Updates are plain
dict increments on the event loop thread.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

OUTCOMES = ("mutated", "unchanged", "denied", "rejected")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.reviews: dict[tuple[str, str], int] = {}
        self.bucket_counts = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        self.duration_count = 0
        self.gauges: dict[str, tuple[str, str, Callable[[], float]]] = {}

    def observe(self, operation: str, outcome: str, seconds: float) -> None:
        key = (operation, outcome)
        self.reviews[key] = self.reviews.get(key, 0) + 1
        self.bucket_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum += seconds
        self.duration_count += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float], kind: str = "gauge") -> None:
        """Register a value read at scrape time (`kind` gauge or counter)."""
        self.gauges[name] = (help_text, kind, read)

    def render(self) -> str:
        lines = [
            "# HELP ep_webhook_reviews_total Admission reviews answered, by operation and outcome.",
            "# TYPE ep_webhook_reviews_total counter",
        ]
        for (operation, outcome), n in sorted(self.reviews.items()):
            lines.append(f'ep_webhook_reviews_total{{operation="{_esc(operation)}",outcome="{outcome}"}} {n}')
        lines += [
            "# HELP ep_webhook_review_duration_seconds Time to answer one admission review.",
            "# TYPE ep_webhook_review_duration_seconds histogram",
        ]
        cumulative = 0
        for bound, n in zip(BUCKETS, self.bucket_counts):
            cumulative += n
            lines.append(f'ep_webhook_review_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'ep_webhook_review_duration_seconds_bucket{{le="+Inf"}} {self.duration_count}')
        lines.append(f"ep_webhook_review_duration_seconds_sum {self.duration_sum:.6f}")
        lines.append(f"ep_webhook_review_duration_seconds_count {self.duration_count}")
        for name, (help_text, kind, read) in sorted(self.gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {read()!r}"]
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
