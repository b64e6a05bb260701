"""End to end with KServe's real controllers: what the pod KServe deploys would run.

Each InferenceService goes through the API server with our webhook and KServe's own defaulter and
validator registered; KServe's `manager` then merges it with its runtime (command replaced, args
concatenated runtime-first, `{{.Name}}` rendered) into Deployment `<name>-predictor`. The test takes
that Deployment's `kserve-container`, expands `$(VAR)` from its env as the kubelet does, executes it
with bash and stand-ins that record vLLM's argv, and parses that argv with the vLLM grammar model.

A shape is one row of SHAPES: a function that returns the predictor's `model` (and creates whatever it
needs, such as a ServingRuntime), and the launch it should produce with EP off. New shapes (an
auto-selected runtime, huggingfaceserver, ...) are one function and one row.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.conftest import webhook_configuration
from tests.e2e.kserve import GROUP, LABEL, KServe, plain
from tests.e2e.kubelet import run_container
from tests.helpers import huggingfaceserver_vllm_args, stand_in_bin
from tests.server_harness import Server
from tests.vllm_grammar import parse_launch
from tests.vllm_releases import Judge, serve_argv
from webhook.cli.main import main as cli_main
from webhook.core.annotations import UNDO_RECORD
from webhook.kserve import shipped
from webhook.kserve.images import release_of as hf_release_of

GPUS = 8
EP_ANNOTATIONS = {
    "ep.enabled": "true",
    "ep.tensor-parallel-size": "2",
    "ep.eplb": "true",
    "ep.all2all-backend": "deepep_low_latency",
}

SCRIPT = (
    "set -e\n"
    "# one rank per GPU, computed at start\n"
    "GPU_COUNT=$(nvidia-smi -L | wc -l)\n"
    "exec vllm serve /mnt/models \\\n"
    "  --served-model-name {{.Name}} \\\n"
    "  --tensor-parallel-size ${GPU_COUNT}\n"
)

CUSTOM_RUNTIME_SCRIPT = 'exec vllm serve /mnt/models --served-model-name "$MODEL_NAME" "$@"'


# -- the shapes ------------------------------------------------------------------------------


def list_command(api: client.ApiClient, ns: str) -> dict[str, Any]:
    """`vllm serve` as a list in spec.predictor.model.command (the runtime's args still follow, with the model:
    vLLM 0.11.2+ refuses a positional model beside `--model`)."""
    return {"modelFormat": {"name": "vLLM"}, "command": ["vllm", "serve", "-tp", "8"]}


def bash_script(api: client.ApiClient, ns: str) -> dict[str, Any]:
    """A `bash -c` script that computes its own GPU count; `{{.Name}}` is rendered by KServe."""
    return {"modelFormat": {"name": "vLLM"}, "command": ["bash", "-c", SCRIPT, "bash"]}


def kserve_vllmserver_args(api: client.ApiClient, ns: str) -> dict[str, Any]:
    """No command: args appended to those of the ClusterServingRuntime kserve-vllmserver, named."""
    return {"modelFormat": {"name": "vLLM"}, "runtime": "kserve-vllmserver", "args": ["--max-model-len", "4096"]}


def serving_runtime(api: client.ApiClient, ns: str, name: str, container: dict[str, Any]) -> None:
    """A namespaced ServingRuntime `name` for model format `name`, whose kserve-container is `container`."""
    runtime = {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "ServingRuntime",
        "metadata": {"name": name},
        "spec": {
            "supportedModelFormats": [{"name": name, "autoSelect": True}],
            "containers": [{"name": "kserve-container", "image": "vllm/vllm-openai:v0.33.0", **container}],
        },
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, "v1alpha1", ns, "servingruntimes", runtime)


def custom_runtime_forwarding_args(api: client.ApiClient, ns: str) -> dict[str, Any]:
    """A namespaced ServingRuntime whose `bash -c` script forwards "$@"; its args use `$(PORT)`."""
    serving_runtime(api, ns, "bash-vllm", {
        "command": ["bash", "-c", CUSTOM_RUNTIME_SCRIPT, "--"],
        "args": ["--port=$(PORT)"],
        "env": [{"name": "PORT", "value": "8080"}, {"name": "MODEL_NAME", "value": "{{.Name}}"}],
    })
    return {"modelFormat": {"name": "bash-vllm"}, "runtime": "bash-vllm", "args": ["--max-model-len", "4096"]}


def command_with_runtime_args_setting_tp(api: client.ApiClient, ns: str) -> dict[str, Any]:
    """A list command naming a runtime whose args set TP: KServe puts those args after the command."""
    serving_runtime(api, ns, "tp4-vllm", {
        "command": ["python", "-m", "vllm.entrypoints.openai.api_server"],
        "args": ["--port=8080", "--tensor-parallel-size=4", "--served-model-name={{.Name}}"],
    })
    model = {"modelFormat": {"name": "tp4-vllm"}, "runtime": "tp4-vllm", "command": ["vllm", "serve", "/mnt/models"]}
    # the webhook learns of new runtimes through its watch: wait until a dry run shows it knows this one
    probe = inference_service("probe-tp4", copy.deepcopy(model), EP_ANNOTATIONS)
    deadline = time.monotonic() + 20
    while not plain(api, isvcs(api).create_namespaced_custom_object(
            GROUP, "v1beta1", ns, "inferenceservices", probe, dry_run="All"))["spec"]["predictor"]["model"].get("args"):
        assert time.monotonic() < deadline, "the webhook never saw ServingRuntime tp4-vllm"
        time.sleep(0.3)
    return model


def auto_selected_runtime(api: client.ApiClient, ns: str) -> dict[str, Any]:
    """No command and no runtime: KServe auto-selects kserve-vllmserver for modelFormat vLLM."""
    return {"modelFormat": {"name": "vLLM"}, "args": ["--max-model-len", "4096"]}


@dataclass(frozen=True)
class Shape:
    id: str
    model: Callable[[client.ApiClient, str], dict[str, Any]]
    tp_without_ep: int  # what the launch asks for when EP is off
    port: int | None = None  # set by the runtime's args or the script; None: vLLM's default
    max_model_len: int | None = None  # when the InferenceService sets it in args


SHAPES = [
    Shape("list-command", list_command, tp_without_ep=8, port=8080),
    Shape("bash-c-script", bash_script, tp_without_ep=GPUS),
    Shape("args-only-kserve-vllmserver", kserve_vllmserver_args, tp_without_ep=1, port=8080, max_model_len=4096),
    Shape("custom-servingruntime-forwarding-args", custom_runtime_forwarding_args, tp_without_ep=1, port=8080,
          max_model_len=4096),
    Shape("args-only-auto-selected-runtime", auto_selected_runtime, tp_without_ep=1, port=8080, max_model_len=4096),
    Shape("command-with-runtime-args-setting-tp", command_with_runtime_args_setting_tp, tp_without_ep=4, port=8080),
]


# -- helpers ---------------------------------------------------------------------------------


def inference_service(name: str, model: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    model = {**model, "storageUri": "pvc://models/qwen3-moe",
             "resources": {"limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": str(GPUS)}}}
    return {
        "apiVersion": f"{GROUP}/v1beta1", "kind": "InferenceService",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"predictor": {"model": model}},
    }


def isvcs(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def edit_isvc(api: client.ApiClient, ns: str, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read, change, replace, as `kubectl edit` does; again on a conflict (KServe writes status meanwhile)."""
    while True:
        live = plain(api, isvcs(api).get_namespaced_custom_object(GROUP, "v1beta1", ns, "inferenceservices", name))
        change(live)
        try:
            return plain(api, isvcs(api).replace_namespaced_custom_object(
                GROUP, "v1beta1", ns, "inferenceservices", name, live))
        except ApiException as e:
            if e.status != 409:
                raise


def deployed_container(kserve: KServe, api: client.ApiClient, ns: str, deployment: str, container: str,
                       ready: Callable[[dict[str, Any]], bool] = lambda c: True) -> dict[str, Any]:
    """Container `container` of the pod template of Deployment `deployment`, once KServe wrote one that
    satisfies ready."""
    apps = client.AppsV1Api(api)

    def get() -> dict[str, Any] | None:
        dep = plain(api, apps.read_namespaced_deployment(deployment, ns))
        for c in dep["spec"]["template"]["spec"]["containers"]:
            if c["name"] == container and ready(c):
                assert isinstance(c, dict)
                return c
        return None

    out: dict[str, Any] = kserve.wait_for(f"container {container} of Deployment {ns}/{deployment}", get)
    return out


def predictor_container(kserve: KServe, api: client.ApiClient, ns: str, name: str,
                        ready: Callable[[dict[str, Any]], bool] = lambda c: True) -> dict[str, Any]:
    return deployed_container(kserve, api, ns, f"{name}-predictor", "kserve-container", ready)


def launch(container: dict[str, Any], tmp_path: Path, pod: str, ns: str) -> argparse.Namespace:
    """What vLLM would parse if the kubelet started this container in pod `pod`."""
    argv = run_container(container, stand_in_bin(tmp_path / "bin"), tmp_path,
                         {"metadata.name": pod, "metadata.namespace": ns})
    return parse_launch(argv)


def ep_on(c: dict[str, Any]) -> bool:
    words = [*(c.get("command") or []), *(c.get("args") or [])]
    return any("--enable-expert-parallel" in w for w in words)


# -- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=[s.id for s in SHAPES])
def test_the_pod_kserve_deploys_runs_vllm_with_expert_parallel(
        shape: Shape, api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str,
        tmp_path: Path) -> None:
    ns, name = kserve_namespace, f"ep-{shape.id}"[:40].rstrip("-")
    obj = inference_service(name, shape.model(api, ns), EP_ANNOTATIONS)
    stored = plain(api, isvcs(api).create_namespaced_custom_object(GROUP, "v1beta1", ns, "inferenceservices", obj))
    # both webhooks ran: KServe's defaulter and ours
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert UNDO_RECORD in stored["metadata"]["annotations"]

    container = predictor_container(kserve, api, ns, name, ep_on)
    vllm = launch(container, tmp_path, f"{name}-predictor-0", ns)

    assert vllm.enable_expert_parallel is True
    assert (vllm.tensor_parallel_size, vllm.data_parallel_size) == (2, GPUS // 2)
    assert vllm.enable_eplb is True
    assert vllm.all2all_backend == "deepep_low_latency"
    assert "/mnt/models" in (vllm.model, getattr(vllm, "model_tag", None))
    assert vllm.served_model_name == [name]  # KServe rendered {{.Name}}
    assert vllm.port == shape.port
    assert vllm.max_model_len == shape.max_model_len


@pytest.mark.parametrize("shape", SHAPES, ids=[s.id for s in SHAPES])
def test_turning_ep_off_makes_kserve_deploy_the_original_launch_again(
        shape: Shape, api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str,
        tmp_path: Path) -> None:
    ns, name = kserve_namespace, f"off-{shape.id}"[:40].rstrip("-")
    model = shape.model(api, ns)
    isvcs(api).create_namespaced_custom_object(
        GROUP, "v1beta1", ns, "inferenceservices", inference_service(name, copy.deepcopy(model), EP_ANNOTATIONS))
    with_ep = predictor_container(kserve, api, ns, name, ep_on)
    assert launch(with_ep, tmp_path, f"{name}-predictor-0", ns).enable_expert_parallel is True

    stored = edit_isvc(api, ns, name, lambda live: live["metadata"]["annotations"].update({"ep.enabled": "false"}))
    assert UNDO_RECORD not in stored["metadata"]["annotations"]
    assert {k: stored["spec"]["predictor"]["model"].get(k) for k in ("command", "args")} == \
        {k: model.get(k) for k in ("command", "args")}

    without_ep = predictor_container(kserve, api, ns, name, lambda c: not ep_on(c))
    vllm = launch(without_ep, tmp_path, f"{name}-predictor-0", ns)
    assert (vllm.enable_expert_parallel, vllm.enable_eplb, vllm.all2all_backend) == (False, False, None)
    assert (vllm.tensor_parallel_size, vllm.data_parallel_size) == (shape.tp_without_ep, 1)
    if "command" in model:  # the InferenceService's command replaces the runtime's, as written
        assert without_ep["command"] == [w.replace("{{.Name}}", name) for w in model["command"]]
    if "args" in model:  # the InferenceService's args come last, as written
        assert without_ep["args"][-len(model["args"]):] == model["args"]


# -- huggingfaceserver: KServe's default LLM runtime --------------------------------------------

# The huggingfaceserver image's ENTRYPOINT, which runs when neither runtime nor object sets a command.
HUGGINGFACESERVER_ENTRYPOINT = ["python", "-m", "huggingfaceserver"]


def test_an_auto_selected_huggingfaceserver_runs_ep_over_the_tp_it_forces_to_the_gpu_count(
        api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str, tmp_path: Path) -> None:
    ns, name = kserve_namespace, "hf"
    model = {"modelFormat": {"name": "huggingface"}, "args": ["--max_model_len=4096"]}
    obj = inference_service(name, model, {"ep.enabled": "true"})
    stored = plain(api, isvcs(api).create_namespaced_custom_object(GROUP, "v1beta1", ns, "inferenceservices", obj))
    assert stored["spec"]["predictor"]["model"]["args"] == ["--max_model_len=4096", "--enable-expert-parallel"]
    container = predictor_container(kserve, api, ns, name, ep_on)
    assert not container.get("command"), "kserve-huggingfaceserver runs its image's entrypoint"
    argv = run_container({**container, "command": HUGGINGFACESERVER_ENTRYPOINT}, stand_in_bin(tmp_path / "bin"),
                         tmp_path, {"metadata.name": f"{name}-predictor-0", "metadata.namespace": ns})
    server = parse_launch(argv, gpus=GPUS)  # vllm_model.py: tensor_parallel_size = torch.cuda.device_count()
    assert (server.enable_expert_parallel, server.tensor_parallel_size, server.data_parallel_size) == (True, GPUS, 1)
    assert server.model_name == name and server.max_model_len == 4096


@pytest.mark.parametrize("flags", [(), ("--no-default-runtimes",)], ids=["shipped-runtimes", "turned-off"])
def test_offline_mutate_with_no_runtimes_gives_kserve_an_object_its_huggingfaceserver_runs_on_the_pods_gpus(
        flags: tuple[str, ...], api: client.ApiClient, kserve: KServe, vllm_judges: dict[str, Judge],
        tmp_path: Path) -> None:
    """Issue 20.2: `ep-webhook mutate` without runtimes, then `kubectl apply` into a KServe cluster (our webhook
    left out of the namespace): KServe's controller merges it with its kserve-huggingfaceserver, and the vLLM
    that huggingfaceserver image bundles parses what the pod runs."""
    ns = f"offline-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns, "labels": {LABEL: "true", "e2e-policy": "none"}}})
    name = "hf-" + ("off" if flags else "shipped")
    obj = inference_service(name, {"modelFormat": {"name": "huggingface"}, "args": ["--max_model_len=4096"]},
                            {"ep.enabled": "true"})
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["mutate", "-f", "-", *flags], stdin=io.StringIO(json.dumps(obj)), stdout=out, stderr=err) == 0
    assert ("resolved against KServe v0.20.0's shipped LLM runtimes" in err.getvalue()) is not bool(flags)
    offline = yaml.safe_load(out.getvalue())
    stored = plain(api, isvcs(api).create_namespaced_custom_object(GROUP, "v1beta1", ns, "inferenceservices", offline))
    assert stored["spec"]["predictor"]["model"]["args"] == offline["spec"]["predictor"]["model"]["args"]

    container = predictor_container(kserve, api, ns, name, ep_on)
    argv = run_container({**container, "command": HUGGINGFACESERVER_ENTRYPOINT}, stand_in_bin(tmp_path / "bin"),
                         tmp_path, {"metadata.name": f"{name}-predictor-0", "metadata.namespace": ns})
    release = ".".join(map(str, hf_release_of(next(r.image for r in shipped.RUNTIMES
                                                     if r.name == "kserve-huggingfaceserver")) or ()))
    verdict = vllm_judges[release].judge(huggingfaceserver_vllm_args(argv, GPUS), GPUS, entry="api_server")
    assert verdict.ok, verdict.error
    p = verdict.parallel
    if flags:  # planned for plain vLLM (TP 1 x DP 8): huggingfaceserver makes it TP 8 x DP 8
        assert p["tensor_parallel_size"] * p["data_parallel_size"] == GPUS * GPUS
    else:
        assert (p["enable_expert_parallel"], p["tensor_parallel_size"], p["data_parallel_size"]) == (True, GPUS, 1)
        assert verdict.parsed["max_model_len"] == 4096


# -- a custom predictor: KServe's defaulter names its container -------------------------------------

FIRST_CONFIG = "0-vllm-ep-webhook-first"  # sorts before KServe's inferenceservice.serving.kserve.io
FIRST_LABEL = "e2e-webhook-first"


@pytest.fixture()
def ours_first(api: client.ApiClient, registered: Server) -> Iterator[str]:
    """A label under which our webhook is also called before KServe's defaulter: the API server calls mutating
    webhook configurations in the order of their names (and ours again after it, `reinvocationPolicy`)."""
    conf = webhook_configuration(f"https://127.0.0.1:{registered.port}/mutate", registered.ca().read_bytes())
    conf["metadata"]["name"] = FIRST_CONFIG
    conf["webhooks"][0]["namespaceSelector"] = {"matchLabels": {FIRST_LABEL: "true"}}
    adm = client.AdmissionregistrationV1Api(api)
    adm.create_mutating_webhook_configuration(conf)
    try:
        yield FIRST_LABEL
    finally:
        adm.delete_mutating_webhook_configuration(FIRST_CONFIG)


@pytest.mark.parametrize("order", ["ours-after-kserve", "ours-before-kserve"])
def test_a_lone_container_named_server_runs_ep_in_the_pod_whichever_webhook_runs_first(
        order: str, api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str,
        ours_first: str, vllm_judges: dict[str, Judge], tmp_path: Path) -> None:
    """Issue 20.1: KServe's defaulter renames the only container `kserve-container` and the pod runs it."""
    ns, name = kserve_namespace, f"server-{order.split('-')[1]}"
    if order == "ours-before-kserve":
        client.CoreV1Api(api).patch_namespace(ns, {"metadata": {"labels": {ours_first: "true"}}})
        time.sleep(1)  # the API server's informer sees the label
    command = ["vllm", "serve", "/mnt/models", "--served-model-name", name]
    server = {"name": "server", "image": "vllm/vllm-openai:v0.33.0", "command": command,
              "resources": {"limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": str(GPUS)}}}
    obj = {"apiVersion": f"{GROUP}/v1beta1", "kind": "InferenceService",
           "metadata": {"name": name, "annotations": {"ep.enabled": "true"}},
           "spec": {"predictor": {"containers": [server]}}}
    stored = plain(api, isvcs(api).create_namespaced_custom_object(GROUP, "v1beta1", ns, "inferenceservices", obj))
    assert [c["name"] for c in stored["spec"]["predictor"]["containers"]] == ["kserve-container"]  # KServe renamed it
    assert UNDO_RECORD in stored["metadata"]["annotations"]

    container = predictor_container(kserve, api, ns, name, ep_on)
    argv = run_container(container, stand_in_bin(tmp_path / "bin"), tmp_path,
                         {"metadata.name": f"{name}-predictor-0", "metadata.namespace": ns})
    verdict = vllm_judges["0.33.0"].judge(serve_argv(argv), GPUS)  # the image's release parses it
    assert verdict.ok, verdict.error
    p = verdict.parallel
    assert (p["enable_expert_parallel"], p["tensor_parallel_size"], p["data_parallel_size"]) == (True, 1, GPUS)
    assert verdict.parsed["served_model_name"] == [name]

    stored = edit_isvc(api, ns, name, lambda live: live["metadata"]["annotations"].update({"ep.enabled": "false"}))
    assert stored["spec"]["predictor"]["containers"][0]["command"] == command  # the undo found the same container
    without_ep = predictor_container(kserve, api, ns, name, lambda c: not ep_on(c))
    assert without_ep["command"] == command


# -- LLMInferenceService ----------------------------------------------------------------------


def llm_service(name: str, version: str, gpus: int = GPUS, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{version}", "kind": "LLMInferenceService",
        "metadata": {"name": name, "annotations": {"ep.enabled": "true", "ep.eplb": "true",
                                                   "ep.eplb-config": '{"window_size": 1000}'}},
        "spec": {
            "model": {"uri": "pvc://models/qwen3-moe", "name": "qwen3-moe"},
            "template": {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
            **spec,
        },
    }


def lws_container(kserve: KServe, api: client.ApiClient, ns: str, name: str, template: str) -> dict[str, Any]:
    """The main container of a LeaderWorkerSet's leader or worker template, once llmisvc wrote it."""
    objs = client.CustomObjectsApi(api)

    def get() -> dict[str, Any] | None:
        lws = objs.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", ns, "leaderworkersets", name)
        pod = lws["spec"]["leaderWorkerTemplate"].get(template)
        for c in (pod or {}).get("spec", {}).get("containers", []):
            if c["name"] == "main":
                assert isinstance(c, dict)
                return c
        return None

    out: dict[str, Any] = kserve.wait_for(f"main of {template} in LeaderWorkerSet {ns}/{name}", get)
    return out


@pytest.mark.parametrize("version", ["v1alpha1", "v1alpha2"])
def test_a_single_node_llminferenceservice_pod_runs_vllm_with_ep_and_dp_from_its_gpus(
        version: str, api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str,
        tmp_path: Path) -> None:
    ns, name = kserve_namespace, f"single-{version}"
    isvcs(api).create_namespaced_custom_object(GROUP, version, ns, "llminferenceservices", llm_service(name, version))
    container = deployed_container(kserve, api, ns, f"{name}-kserve", "main", ep_on)
    vllm = launch(container, tmp_path, f"{name}-kserve-0", ns)
    assert (vllm.enable_expert_parallel, vllm.tensor_parallel_size, vllm.data_parallel_size) == (True, 1, GPUS)
    assert vllm.enable_eplb is True and vllm.eplb_config == {"window_size": 1000}


def test_prefill_and_decode_pods_each_run_ep_from_their_own_gpus(
        api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str, tmp_path: Path) -> None:
    ns, name = kserve_namespace, "pd"
    prefill = {"template": {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}
    isvcs(api).create_namespaced_custom_object(
        GROUP, "v1alpha2", ns, "llminferenceservices", llm_service(name, "v1alpha2", prefill=prefill))
    decode = launch(deployed_container(kserve, api, ns, f"{name}-kserve", "main", ep_on), tmp_path / "d",
                    f"{name}-kserve-0", ns)
    first = launch(deployed_container(kserve, api, ns, f"{name}-kserve-prefill", "main", ep_on), tmp_path / "p",
                   f"{name}-kserve-prefill-0", ns)
    assert (decode.enable_expert_parallel, decode.data_parallel_size) == (True, GPUS)
    assert (first.enable_expert_parallel, first.data_parallel_size) == (True, 4)


def test_a_multi_node_leaderworkerset_gets_kserves_data_parallel_flags_from_the_webhooks_parallelism(
        api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str, tmp_path: Path) -> None:
    ns, name = kserve_namespace, "multi"
    obj = llm_service(name, "v1alpha2", worker={"containers": [
        {"name": "main", "resources": {"limits": {"nvidia.com/gpu": str(GPUS)}}}]})
    obj["metadata"]["annotations"]["ep.nodes"] = "2"
    isvcs(api).create_namespaced_custom_object(GROUP, "v1alpha2", ns, "llminferenceservices", obj)
    leader = lws_container(kserve, api, ns, f"{name}-kserve-mn", "leaderTemplate")
    worker = lws_container(kserve, api, ns, f"{name}-kserve-mn", "workerTemplate")
    env = {"LWS_LEADER_ADDRESS": "multi-0.multi.ns", "LWS_WORKER_INDEX": "1"}
    lead = parse_launch(run_container(leader, stand_in_bin(tmp_path / "l" / "bin"), _mkdir(tmp_path / "l"),
                                      {"metadata.name": f"{name}-0", "metadata.namespace": ns}, env))
    work = parse_launch(run_container(worker, stand_in_bin(tmp_path / "w" / "bin"), _mkdir(tmp_path / "w"),
                                      {"metadata.name": f"{name}-0-1", "metadata.namespace": ns}, env))
    for vllm in (lead, work):
        assert (vllm.enable_expert_parallel, vllm.data_parallel_size, vllm.data_parallel_size_local) == (True, 16, 8)
        assert vllm.enable_eplb is True and vllm.eplb_config == {"window_size": 1000}
    assert (lead.headless, work.headless, work.data_parallel_start_rank) == (False, True, 8)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_llmisvc_deploys_the_preset_script_running_vllm_with_the_spec_tensor_parallel_size(
        api: client.ApiClient, kserve: KServe, kserve_namespace: str, tmp_path: Path) -> None:
    ns, name, model_name = kserve_namespace, "llm", "Qwen/Qwen3-30B-A3B"
    obj = {
        "apiVersion": f"{GROUP}/v1alpha2", "kind": "LLMInferenceService", "metadata": {"name": name},
        "spec": {
            "model": {"uri": "pvc://models/qwen3-moe", "name": model_name},
            "parallelism": {"tensor": 2},
            "template": {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]},
        },
    }
    isvcs(api).create_namespaced_custom_object(GROUP, "v1alpha2", ns, "llminferenceservices", obj)
    container = deployed_container(kserve, api, ns, f"{name}-kserve", "main")
    assert container["command"][:2] == ["/bin/bash", "-c"]
    vllm = launch(container, tmp_path, f"{name}-kserve-0", ns)
    assert (vllm.model_tag, vllm.tensor_parallel_size, vllm.port) == ("/mnt/models", 2, 8000)
    assert vllm.served_model_name == [model_name, f"publishers/{ns}/models/{model_name}"]
    assert (vllm.enable_expert_parallel, vllm.data_parallel_size) == (False, 1)


# -- /dev/shm: what KServe's merge makes of the volume the webhook adds or raises ----------------


def deployed_pod(kserve: KServe, api: client.ApiClient, ns: str, deployment: str, container: str) -> dict[str, Any]:
    """The pod spec of Deployment `deployment` once KServe wrote one whose `container` runs EP."""
    apps = client.AppsV1Api(api)

    def get() -> dict[str, Any] | None:
        pod = plain(api, apps.read_namespaced_deployment(deployment, ns))["spec"]["template"]["spec"]
        ready = any(c["name"] == container and ep_on(c) for c in pod["containers"])
        return pod if ready else None

    out: dict[str, Any] = kserve.wait_for(f"pod of Deployment {ns}/{deployment} running EP", get)
    return out


def dev_shm(pod: dict[str, Any], container: str) -> list[dict[str, Any]]:
    """The volumes container `container` has at /dev/shm (the API server refuses two mounts at one path)."""
    (c,) = [c for c in pod["containers"] if c["name"] == container]
    names = [m["name"] for m in c.get("volumeMounts", []) if m["mountPath"].rstrip("/") == "/dev/shm"]
    return [v for v in pod.get("volumes", []) if v["name"] in names]


def test_a_runtime_without_dev_shm_gets_the_webhooks_volume_and_kserves_vllm_runtime_keeps_its_own(
        api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str) -> None:
    ns = kserve_namespace
    serving_runtime(api, ns, "plain-vllm", {"command": ["python", "-m", "vllm.entrypoints.openai.api_server"],
                                            "args": ["--port=8080"]})
    model = {"modelFormat": {"name": "plain-vllm"}, "runtime": "plain-vllm", "args": ["--max-model-len", "4096"]}
    # the webhook learns of new runtimes through its watch: wait until a dry run shows it knows this one
    probe = inference_service("probe-shm", copy.deepcopy(model), EP_ANNOTATIONS)
    deadline = time.monotonic() + 20
    while "volumes" not in plain(api, isvcs(api).create_namespaced_custom_object(
            GROUP, "v1beta1", ns, "inferenceservices", probe, dry_run="All"))["spec"]["predictor"]:
        assert time.monotonic() < deadline, "the webhook never saw ServingRuntime plain-vllm"
        time.sleep(0.3)
    isvcs(api).create_namespaced_custom_object(
        GROUP, "v1beta1", ns, "inferenceservices", inference_service("shm-added", model, EP_ANNOTATIONS))
    pod = deployed_pod(kserve, api, ns, "shm-added-predictor", "kserve-container")
    assert dev_shm(pod, "kserve-container") == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}]

    isvcs(api).create_namespaced_custom_object(GROUP, "v1beta1", ns, "inferenceservices", inference_service(
        "shm-runtime", kserve_vllmserver_args(api, ns), EP_ANNOTATIONS))
    pod = deployed_pod(kserve, api, ns, "shm-runtime-predictor", "kserve-container")
    assert dev_shm(pod, "kserve-container") == [{"name": "devshm", "emptyDir": {"medium": "Memory"}}]


@pytest.mark.parametrize("own", [None, "1Gi"], ids=["no-dshm", "dshm-1Gi"])
def test_llmisvc_deploys_the_dshm_the_webhook_raised_over_the_presets_1gi(
        own: str | None, api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str) -> None:
    ns, name = kserve_namespace, f"shm-{(own or 'none').lower()}"
    obj = llm_service(name, "v1alpha2")
    if own is not None:
        obj["spec"]["template"]["volumes"] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": own}}]
    stored = isvcs(api).create_namespaced_custom_object(GROUP, "v1alpha2", ns, "llminferenceservices", obj)
    assert stored["spec"]["template"]["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}]
    pod = deployed_pod(kserve, api, ns, f"{name}-kserve", "main")
    # the preset (config-llm-template.yaml) mounts dshm of 1Gi; KServe merged ours into it by name
    assert dev_shm(pod, "main") == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}]
    assert [v["name"] for v in pod["volumes"]].count("dshm") == 1
