"""Layer 1, the bottom: errors, JSON value checks and short text. Knows nothing of vLLM, KServe or Kubernetes; pure."""
