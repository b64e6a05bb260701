"""vllm-ep-webhook: turns on vLLM expert parallelism for KServe InferenceServices."""
