"""`kustomize build | ep-webhook mutate -f -`: streams of manifests through the installed CLI."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import yaml

from tests.helpers import RUNTIMES_DIR, isvc, kserve_container, model
from tests.cli.test_cli import cli
from tests.vllm_grammar import parse_huggingfaceserver, parse_launch

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llm", "labels": {"team": "a"}}}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "llm"},
             "data": {"script": "vllm serve --data-parallel-size 3"}}
FORWARDING = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ServingRuntime",
    "metadata": {"name": "team-vllm", "namespace": "llm"},
    "spec": {
        "supportedModelFormats": [{"name": "vLLM", "autoSelect": True, "priority": 1}],
        "containers": [{"name": "kserve-container", "image": "vllm/vllm-openai:v0.33.0",
                        "command": ["bash", "-c", 'exec vllm serve /mnt/models --port 8080 "$@"', "--"]}],
    },
}


def named(name: str, **kw: Any) -> dict[str, Any]:
    obj = isvc(**kw)
    obj["metadata"]["name"] = name
    return obj


def auto_vllm(name: str) -> dict[str, Any]:
    obj = named(name, args=["--max-model-len=4096"])
    model(obj)["modelFormat"] = {"name": "vLLM"}
    return obj


def huggingface(name: str) -> dict[str, Any]:
    obj = named(name)
    model(obj)["modelFormat"] = {"name": "huggingface"}
    return obj


def stream(*objs: dict[str, Any]) -> str:
    return "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objs)


def test_a_kustomize_stream_is_mutated_in_place_and_everything_else_passes_unchanged_in_order() -> None:
    plain = named("plain", command=["vllm", "serve", "m"], enabled=None)
    listed = named("listed", command=["vllm", "serve", "m"])
    docs = [NAMESPACE, CONFIGMAP, FORWARDING, auto_vllm("auto"), listed, plain]
    done = cli("mutate", "-f", "-", stdin=stream(*docs))
    assert done.returncode == 0, done.stderr
    out = list(yaml.safe_load_all(done.stdout))
    assert [(o["kind"], o["metadata"]["name"]) for o in out] == [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert out[0] == NAMESPACE and out[1] == CONFIGMAP and out[2] == FORWARDING and out[5] == plain
    # the auto-selected runtime from the stream forwards "$@": the flags go to args, after the runtime's own
    script_args = model(out[3])["args"]
    assert parse_launch(["vllm", "serve", "/mnt/models", "--port", "8080", *script_args]).data_parallel_size == 8
    assert parse_launch(model(out[4])["command"]).enable_expert_parallel is True
    assert "warning: InferenceService llm/auto: added" in done.stderr
    assert "could not check" not in done.stderr


def test_runtimes_from_files_resolve_kserves_default_llm_runtime() -> None:
    files = [arg for p in sorted(RUNTIMES_DIR.glob("*.yaml")) for arg in ("--runtimes", str(p))]
    done = cli("mutate", *files, "-f", "-", stdin=stream(huggingface("hf")))
    assert done.returncode == 0, done.stderr
    out = yaml.safe_load(done.stdout)
    assert model(out)["args"] == ["--enable-expert-parallel"]  # nothing else: the server forces TP = GPUs
    runtime = yaml.safe_load((RUNTIMES_DIR / "kserve-huggingfaceserver.yaml").read_text())
    argv, _ = kserve_container(out, runtime)  # what KServe starts: the image's entrypoint + runtime and own args
    server = parse_huggingfaceserver(argv[3:], visible_gpus=8)
    assert (server.enable_expert_parallel, server.tensor_parallel_size, server.data_parallel_size) == (True, 8, 1)
    assert "GPU count (8)" in done.stderr


def test_without_runtimes_an_object_without_command_is_edited_as_for_vllm() -> None:
    done = cli("mutate", "-f", "-", stdin=stream(auto_vllm("a")))
    assert done.returncode == 0
    assert parse_launch(["vllm", "serve", "m", *model(yaml.safe_load(done.stdout))["args"]]).data_parallel_size == 8


def test_any_denial_fails_the_whole_stream_with_every_reason_and_prints_nothing() -> None:
    one_gpu = named("small", command=["vllm", "serve", "m"], limits={"nvidia.com/gpu": "1"})
    bad_tp = named("odd", command=["vllm", "serve", "m"], annotations={"ep.tensor-parallel-size": "3"})
    done = cli("mutate", "-f", "-", stdin=stream(NAMESPACE, one_gpu, named("fine", command=["vllm", "serve", "m"]), bad_tp))
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith("InferenceService llm/small: ") and "at least 2 GPUs" in lines[0]
    assert lines[1].startswith("InferenceService llm/odd: ") and "does not divide" in lines[1]
    assert len(lines) == 2


def test_json_output_of_a_stream_is_a_list() -> None:
    done = cli("mutate", "-f", "-", "-o", "json", stdin=stream(CONFIGMAP, named("x", command=["vllm", "serve", "m"])))
    assert done.returncode == 0
    out = json.loads(done.stdout)
    assert out["kind"] == "List" and [i["kind"] for i in out["items"]] == ["ConfigMap", "InferenceService"]


def test_a_list_comes_back_as_a_list_and_a_json_object_as_an_object() -> None:
    obj = named("x", command=["vllm", "serve", "m"])
    listing = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": [CONFIGMAP, obj]}
    done = cli("mutate", "-f", "-", stdin=json.dumps(listing))
    out = yaml.safe_load(done.stdout)
    assert out["kind"] == "List" and out["metadata"] == {"resourceVersion": ""} and out["items"][0] == CONFIGMAP
    assert parse_launch(model(out["items"][1])["command"]).data_parallel_size == 8
    single = cli("mutate", "-f", "-", "-o", "json", stdin=json.dumps(obj))
    assert json.loads(single.stdout)["kind"] == "InferenceService"


def test_patch_output_labels_one_patch_per_mutated_object() -> None:
    a, b = named("a", command=["vllm", "serve", "m"]), named("b", command=["vllm", "serve", "m"], enabled=None)
    c = named("c", command=["vllm", "serve", "m"])
    done = cli("mutate", "-f", "-", "-o", "patch", stdin=stream(CONFIGMAP, a, b, c))
    patches = json.loads(done.stdout)
    assert [(p["kind"], p["namespace"], p["name"]) for p in patches] == [
        ("InferenceService", "llm", "a"), ("InferenceService", "llm", "c")]
    result = jsonpatch.apply_patch(copy.deepcopy(a), patches[0]["patch"])
    assert parse_launch(model(result)["command"]).enable_expert_parallel is True


def test_runtimes_files_without_runtimes_and_non_objects_are_usage_errors(tmp_path: Any) -> None:
    empty = tmp_path / "cm.yaml"
    empty.write_text(yaml.safe_dump(CONFIGMAP))
    done = cli("mutate", "--runtimes", str(empty), "-f", "-", stdin=stream(named("x", command=["vllm", "serve", "m"])))
    assert done.returncode == 2 and "no ServingRuntime" in done.stderr
    done = cli("mutate", "-f", "-", stdin="- just\n- a list\n")
    assert done.returncode == 2 and "not a Kubernetes object" in done.stderr


def test_llminferenceservices_in_a_stream_are_mutated_too() -> None:
    from tests.kserve.test_llminferenceservice import llmisvc

    done = cli("mutate", "-f", "-", stdin=stream(CONFIGMAP, llmisvc(), named("x", command=["vllm", "serve", "m"])))
    assert done.returncode == 0, done.stderr
    out = list(yaml.safe_load_all(done.stdout))
    assert out[1]["spec"]["parallelism"] == {"tensor": 1, "expert": True, "data": 8, "dataLocal": 8}
    assert "warning: LLMInferenceService llm/qwen3: set spec.parallelism" in done.stderr
