"""KServe's API as the webhook uses it: the group, and the version and plural of each kind it reads."""

from __future__ import annotations

GROUP = "serving.kserve.io"
"""The API group of every KServe kind."""
INFERENCE_SERVICES = ("v1beta1", "inferenceservices")
LLM_INFERENCE_SERVICES = ("v1alpha2", "llminferenceservices")
"""(version, plural); v1alpha2 is the stored version, v1alpha1 is served too (same schema, no conversion)."""
SERVING_RUNTIMES = ("v1alpha1", "servingruntimes")
CLUSTER_SERVING_RUNTIMES = ("v1alpha1", "clusterservingruntimes")
LLM_INFERENCE_SERVICE_CONFIGS = ("v1alpha2", "llminferenceserviceconfigs")
"""LLMInferenceServiceConfig: the presets KServe merges into an LLMInferenceService, by name, from the object's
namespace first, then KServe's own (pkg/controller/v1alpha2/llmisvc/config_merge.go `getConfig`, v0.20)."""
WORKLOADS = (INFERENCE_SERVICES, LLM_INFERENCE_SERVICES)
"""The kinds the webhook decides, as (version, plural)."""
