"""Layer 4: KServe's objects and rules: its API names, ServingRuntimes and how KServe selects one, and the
adapters that read an InferenceService or LLMInferenceService into the core's workload. Pure."""
