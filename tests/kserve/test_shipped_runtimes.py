"""The product's copy of KServe's shipped LLM runtimes (webhook/kserve/shipped.py) and what `mutate` does with it.

The copy is compared with KServe's manifests themselves (read from ../shared, see its README), so a drift is
caught; the issue's example (modelFormat huggingface, args only, 8 GPUs, no runtimes given) is merged with the
runtime KServe would run, as KServe's controller merges it, and parsed as the server would parse it.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
import yaml

from tests.helpers import isvc, kserve_container, model, shipped_runtime_docs
from tests.vllm_grammar import parse_launch
from webhook.cli.main import DEFAULT_RUNTIMES_WARNING, main
from webhook.kserve import shipped
from webhook.kserve.servingruntime import server_started, spec_from_object

GPUS = 8


def test_the_copy_is_kserves_manifests_field_for_field() -> None:
    docs = shipped_runtime_docs()
    copies = {r.name: r for r in shipped.RUNTIMES}
    assert sorted(copies) == sorted(d["metadata"]["name"] for d in docs)
    for doc in docs:
        manifest = spec_from_object(doc["kind"], doc)
        assert manifest is not None
        copy = copies[manifest.name]
        assert shipped.IMAGES[manifest.image] == copy.image  # the placeholder, as a v0.20.0 install fills it
        if manifest.command is not None and manifest.command[:2] == ("bash", "-c"):
            # a script: the copy keeps its launch line, and the webhook reads the same server from both
            assert copy.command == ("bash", "-c", shipped.MULTINODE_LAUNCH)
            assert shipped.MULTINODE_LAUNCH in [line.strip() for line in manifest.command[2].splitlines()]
            assert server_started(copy) == server_started(manifest)
            manifest = dataclasses.replace(manifest, command=copy.command)
        assert dataclasses.replace(manifest, image=copy.image) == copy


def hf_example(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The issue's example: modelFormat huggingface, args only, 8 GPUs, no runtime named."""
    obj = isvc(args=["--max-model-len=4096"], annotations=annotations)
    model(obj)["modelFormat"] = {"name": "huggingface"}
    return obj


def mutate_cli(*objs: dict[str, Any], flags: tuple[str, ...] = ()) -> tuple[int, list[dict[str, Any]], str]:
    """`ep-webhook mutate -f -` on the objects: exit code, the printed objects, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = main(["mutate", "-f", "-", *flags], stdin=io.StringIO(yaml.safe_dump_all(objs)), stdout=out, stderr=err)
    return code, [d for d in yaml.safe_load_all(out.getvalue()) if d], err.getvalue()


def huggingfaceserver(obj: dict[str, Any]) -> Any:
    """What kserve-huggingfaceserver's pod parses: the runtime's args, then the object's; TP forced to the GPU
    count (python/huggingfaceserver/huggingfaceserver/vllm/vllm_model.py, KServe v0.20.0)."""
    runtime = next(d for d in shipped_runtime_docs() if d["metadata"]["name"] == "kserve-huggingfaceserver")
    argv, _ = kserve_container(obj, runtime)
    ns = parse_launch(argv)
    ns.tensor_parallel_size = GPUS
    return ns


def test_with_no_runtimes_the_huggingface_example_gets_huggingfaceservers_ep_and_says_why() -> None:
    code, [out], err = mutate_cli(hf_example())
    assert code == 0, err
    assert DEFAULT_RUNTIMES_WARNING in err and len(DEFAULT_RUNTIMES_WARNING) < 120
    server = huggingfaceserver(out)
    assert (server.enable_expert_parallel, server.tensor_parallel_size, server.data_parallel_size) == (True, GPUS, 1)
    assert server.max_model_len == 4096


def test_turned_off_the_example_is_planned_for_plain_vllm_which_huggingfaceserver_makes_64_gpus() -> None:
    code, [out], err = mutate_cli(hf_example(), flags=("--no-default-runtimes",))
    assert code == 0 and DEFAULT_RUNTIMES_WARNING not in err
    server = huggingfaceserver(out)
    assert server.tensor_parallel_size * server.data_parallel_size == GPUS * GPUS


@pytest.mark.parametrize("given", ["stream", "file"])
def test_runtimes_given_in_the_stream_or_a_file_replace_the_shipped_ones(given: str, tmp_path: Any) -> None:
    """A cluster whose `huggingface` runtime is plain vLLM: the webhook plans for that one, without the warning."""
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime",
        "metadata": {"name": "my-vllm"},
        "spec": {"supportedModelFormats": [{"name": "huggingface", "autoSelect": True}],
                 "containers": [{"name": "kserve-container", "image": "vllm/vllm-openai:v0.33.0",
                                 "command": ["vllm", "serve", "/mnt/models"]}]},
    }
    if given == "stream":
        code, outs, err = mutate_cli(runtime, hf_example())
        out = outs[1]
    else:
        (tmp_path / "rt.yaml").write_text(yaml.safe_dump(runtime))
        code, [out], err = mutate_cli(hf_example(), flags=("--runtimes", str(tmp_path / "rt.yaml")))
    assert code == 0 and DEFAULT_RUNTIMES_WARNING not in err
    vllm = parse_launch(["vllm", "serve", "/mnt/models", *model(out)["args"]])
    assert (vllm.enable_expert_parallel, vllm.tensor_parallel_size, vllm.data_parallel_size) == (True, 1, GPUS)


def test_a_denial_from_the_shipped_runtime_says_it_was_resolved_against_it() -> None:
    code, outs, err = mutate_cli(hf_example({"ep.tensor-parallel-size": "2"}))
    assert (code, outs) == (1, [])
    assert "GPU count (8)" in err and DEFAULT_RUNTIMES_WARNING in err


def test_an_object_no_shipped_runtime_serves_gets_no_such_warning() -> None:
    code, _, err = mutate_cli(isvc(command=["vllm", "serve", "/mnt/models"]))  # modelFormat vllm: none auto-selects
    assert code == 0 and "added --enable-expert-parallel" in err and DEFAULT_RUNTIMES_WARNING not in err
