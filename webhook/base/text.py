"""Short text for people: cutting a value or a warning to a length."""

from __future__ import annotations

MAX_WARNING_LENGTH = 119
"""The longest warning the webhook writes, in characters.

Kubernetes' advice for admission webhook warnings (Dynamic Admission Control,
"Response" section) is to keep each one short, under 120 characters if
possible: clients print them as they are, one per line. Verdicts cut every
warning to this length where they are built (`core.verdict`).
"""


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters (>= 1), the last one an ellipsis when anything was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
