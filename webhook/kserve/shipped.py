"""The LLM ClusterServingRuntimes a default KServe v0.20.0 install brings, as the webhook reads them.

What offline resolution falls back to when it is given no runtimes (`ep-webhook mutate` without
`--runtimes`): an InferenceService with `modelFormat: huggingface` and no command runs
kserve-huggingfaceserver in such a cluster, which forces tensor parallel size = GPU count, so the
webhook must plan for it rather than for plain vLLM.

Source: KServe v0.20.0, `config/runtimes/kserve-huggingfaceserver.yaml`,
`config/runtimes/kserve-huggingfaceserver-multinode.yaml` and `config/runtimes/kserve-vllmserver.yaml`
(unchanged up to commit aaac4e294dae). Only the fields `RuntimeSpec` holds are kept (those KServe's
runtime selection and the webhook's launch reading use); tests/kserve/test_shipped_runtimes.py compares
them with the manifests themselves. Images are the ones the release installs: the manifests name
kustomize placeholders, which `config/runtimes/kustomization.yaml` maps to a repository with tag
`latest`, and `hack/release/generate-install.sh` turns `:latest` into `:v0.20.0` in the release's
`kserve-cluster-resources.yaml` (so kserve-vllmserver names `vllm/vllm-openai:v0.20.0` there; the Helm chart
`charts/kserve-runtime-configs` keeps `latest` for it, whose vLLM release its tag does not say).
"""

from __future__ import annotations

from webhook.kserve.servingruntime import ModelFormat, RuntimeSpec

RELEASE = "v0.20.0"
"""The KServe release these runtimes come from."""

IMAGES = {
    "huggingfaceserver:replace": "kserve/huggingfaceserver:v0.20.0",
    "huggingfaceserver-gpu:replace": "kserve/huggingfaceserver:v0.20.0-gpu",
    "vllmserver:replace": "vllm/vllm-openai:v0.20.0",
}
"""The image placeholder of each manifest and the image a v0.20.0 install runs for it."""

MULTINODE_LAUNCH = (
    "python -m huggingfaceserver ${MODEL_DIR_ARG} --tensor-parallel-size=${TENSOR_PARALLEL_SIZE} "
    "--pipeline-parallel-size=${PIPELINE_PARALLEL_SIZE} $0 $@"
)
"""The launch line of kserve-huggingfaceserver-multinode's `bash -c` script. The lines before it start
Ray and wait for its nodes; they start no server and take no args, so they are left out."""

_PROTOCOLS = ("v2", "v1")
_HUGGINGFACE_PRIORITY_1 = (ModelFormat("huggingface", "1", auto_select=True, priority=1),)
_HUGGINGFACE_PRIORITY_2 = (ModelFormat("huggingface", "1", auto_select=True, priority=2),)

RUNTIMES: tuple[RuntimeSpec, ...] = (
    RuntimeSpec(
        "ClusterServingRuntime", "kserve-huggingfaceserver", IMAGES["huggingfaceserver:replace"],
        command=None, args=("--model_name={{.Name}}",),
        formats=_HUGGINGFACE_PRIORITY_1, protocol_versions=_PROTOCOLS, server_type="huggingfaceserver",
    ),
    RuntimeSpec(
        "ClusterServingRuntime", "kserve-huggingfaceserver-multinode", IMAGES["huggingfaceserver-gpu:replace"],
        command=("bash", "-c", MULTINODE_LAUNCH), args=("--model_name={{.Name}}",),
        formats=_HUGGINGFACE_PRIORITY_2, protocol_versions=_PROTOCOLS, multi_node=True,
        server_type="huggingfaceserver",
    ),
    RuntimeSpec(
        "ClusterServingRuntime", "kserve-vllmserver", IMAGES["vllmserver:replace"],
        command=("python", "-m", "vllm.entrypoints.openai.api_server"),
        args=("--port=8080", "--served-model-name={{.Name}}", "--model=/mnt/models"),
        formats=(ModelFormat("vLLM", "1", auto_select=True, priority=1),), server_type="vllmserver",
    ),
)
"""kserve-huggingfaceserver (modelFormat huggingface, single node), its multi-node variant (with
`spec.predictor.workerSpec`) and kserve-vllmserver (modelFormat vLLM), as `RuntimeSpec`s."""
