"""vllm-ep-webhook: turns on vLLM expert parallelism for KServe InferenceServices."""

from __future__ import annotations

__version__ = "0.1.0"
