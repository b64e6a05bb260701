"""The rules that do not depend on the kind, each written once and run for every kind the webhook decides.

The webhook decides InferenceServices and LLMInferenceServices through one core (webhook/core/engine.py),
each kind read by its adapter (webhook/admission/kinds.py). Turning EP on and off, undo, idempotence,
re-planning from the original, hand edits, the undo record, and the policy modes (enforce, forbid,
reject) are the core's rules: they hold for every kind alike, so each is one test here, run for every
layout below.

Structure:

- `Layout` is "a kind under test" in one layout: it builds an object of that kind with given GPUs, vLLM
  flags and annotations, says where the user's flags live in it, and reads back what vLLM would run
  from the (mutated) object: an InferenceService merged with KServe's vLLM runtime the way KServe's
  controller merges it (tests/helpers.kserve_container) and executed with stand-ins that record vLLM's
  argv; an LLMInferenceService merged with KServe's preset for each pod, rendered and run the same way
  (tests/kserve_presets.py). The argv is parsed by the grammar model (tests/vllm_grammar.parse_launch).
- `LAYOUTS` holds every layout that matters: an InferenceService with `vllm serve` in its command, a
  Python module command with the flags in args, args only (the runtime's command), a bash script, its own
  container (a custom predictor, which gets /dev/shm from the webhook); an
  LLMInferenceService on a single node, with prefill and decode, and on several nodes. A test of a rule
  takes `layout` (every layout) or `flag_layout` (those whose flags are a list the user edits: not the
  script, whose edits tests/core/test_undo_intent.py covers); `test_every_kind_has_a_layout` keeps the
  list complete when a kind is added.
- The sections follow the rules: turning EP on, undo, idempotence, a new GPU count or TP annotation,
  hand edits, the undo record, the policy modes, the all2all backend of releases that read it from the env.

What only one kind has stays in its own tests: KServe's runtime merges and huggingfaceserver
(tests/kserve/test_kserve_runtimes.py), custom predictor containers and scripts (tests/core/), the
presets' `eval`, `spec.parallelism`, roles and workers (tests/kserve/test_llminferenceservice.py).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.kubelet import run_container
from tests.helpers import (EXAMPLES, apply, isvc, kserve_container, load_example, recorded_argv,
                           shipped_runtime_docs, stand_in_bin)
from tests.kserve.test_llminferenceservice import llmisvc, multi_node, with_prefill
from tests.kserve_presets import container_argv as preset_argv
from tests.kserve_presets import run as run_preset
from tests.vllm_grammar import parse_launch
from webhook.admission.kinds import KINDS, mutate
from webhook.core.annotations import UNDO_RECORD
from webhook.core.options import Options
from webhook.core.planner import HYBRID_LB_NOTE
from webhook.core.verdict import Verdict

Obj = dict[str, Any]
Make = Callable[[int, list[str] | None, dict[str, str] | None, str | None], Obj]
"""A builder of one layout: (GPUs per pod, the user's vLLM flags, annotations, ep.enabled) -> object."""
SERVE = ["vllm", "serve", "/mnt/models"]
SERVE_ON_RUNTIME = ["vllm", "serve"]
"""A command on KServe's vLLM runtime names no model: the runtime's args pass `--model`, and vLLM 0.11.2 and later
refuse a positional model beside it."""
PYTHON = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
SCRIPT_HEAD = "GPU_COUNT=$(nvidia-smi -L | wc -l)\nexec vllm serve /mnt/models \\\n  "
RECORD_PATH = "/metadata/annotations/vllm-ep-webhook.io~1original"


@dataclass(frozen=True)
class Layout:
    """A kind under test, in one layout.

    `make(gpus, args, annotations, enabled)` builds the object: `gpus` whole GPUs per pod, `args` the user's
    vLLM flags (None: none written), `annotations` beside `ep.enabled` (set to `enabled` unless None).
    `gpus_to(obj, n)` gives every pod of the object n GPUs. `flags(obj)` is the list holding the user's flags
    in the object (None where they are words of a script); `prefix` the words before them in that list.
    `pods(obj, folder)` is the argv vLLM gets in each pod, as the pod would run it; `containers(obj)` the
    container of each pod that starts vLLM (the one the webhook edits). `nodes` is the node
    count (the data-parallel size is nodes x GPUs / TP). `owned` are the JSON pointers the webhook may
    patch (and what lies below them). `restored` starts the warning that says EP was turned off;
    `replanned` are the warnings when every pod's 8 GPUs become 4.
    """

    kind: str
    make: Make
    gpus_to: Callable[[Obj, int], None]
    flags: Callable[[Obj], list[str]] | None
    prefix: tuple[str, ...]
    pods: Callable[[Obj, Path], list[list[str]]]
    containers: Callable[[Obj], list[Obj]]
    owned: tuple[str, ...]
    restored: str
    replanned: tuple[str, ...]
    nodes: int = 1

    def build(self, gpus: int = 8, args: list[str] | None = None, annotations: dict[str, str] | None = None,
              enabled: str | None = "true") -> Obj:
        return self.make(gpus, None if args is None else list(args), annotations, enabled)

    def argvs(self, obj: Obj, tmp_path: Path) -> list[list[str]]:
        """The argv vLLM gets in each pod of the object (run in a new folder under tmp_path)."""
        folder = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        return self.pods(obj, folder)

    def launches(self, obj: Obj, tmp_path: Path) -> list[Any]:
        """What vLLM parses in each pod of the object."""
        return [parse_launch(argv) for argv in self.argvs(obj, tmp_path)]


# -- InferenceService ---------------------------------------------------------------------------------


def _limits(gpus: int) -> dict[str, str]:
    return {"cpu": "8", "nvidia.com/gpu": str(gpus)}


def _isvc(command: Callable[[list[str]], list[str] | None], args: Callable[[list[str]], list[str] | None]) -> Make:
    """An InferenceService served by KServe's vLLM runtime, whose command and args hold the flags as given."""
    def make(gpus: int, flags: list[str] | None, annotations: dict[str, str] | None, enabled: str | None) -> Obj:
        words = flags or []
        return isvc(command=command(words), args=args(words), annotations=annotations, limits=_limits(gpus),
                    enabled=enabled)
    return make


def _model(obj: Obj) -> Obj:
    m = obj["spec"]["predictor"]["model"]
    assert isinstance(m, dict)
    return m


def _isvc_model(obj: Obj) -> list[Obj]:
    return [_model(obj)]


def _isvc_gpus(obj: Obj, gpus: int) -> None:
    _model(obj)["resources"]["limits"]["nvidia.com/gpu"] = str(gpus)


@cache
def _vllm_runtime() -> str:
    return json.dumps(next(d for d in shipped_runtime_docs() if d["metadata"]["name"] == "kserve-vllmserver"))


def _isvc_pods(obj: Obj, folder: Path) -> list[list[str]]:
    """KServe's controller merges the predictor with the vLLM runtime it auto-selects (KServe v0.20
    `MergeRuntimeContainers`); the container runs with stand-ins that record vLLM's argv."""
    argv, env = kserve_container(obj, json.loads(_vllm_runtime()))
    return [recorded_argv(argv, stand_in_bin(folder / "bin"), folder, env)]


def _command(obj: Obj) -> list[str]:
    words = _model(obj)["command"]
    assert isinstance(words, list)
    return words


def _args(obj: Obj) -> list[str]:
    words = _model(obj)["args"]
    assert isinstance(words, list)
    return words


IN_COMMAND = ("/spec/predictor/model/command", RECORD_PATH)
IN_ARGS = ("/spec/predictor/model/args", RECORD_PATH)
ISVC_RESTORED = "EP is off: restored the command and args"
ISVC_REPLANNED = ("replaced --data-parallel-size 8 with 4",)

ISVC_COMMAND = Layout(
    "InferenceService", _isvc(lambda w: [*SERVE_ON_RUNTIME, *w], lambda w: None), _isvc_gpus, _command,
    tuple(SERVE_ON_RUNTIME),
    _isvc_pods, _isvc_model, IN_COMMAND, ISVC_RESTORED, ISVC_REPLANNED)
ISVC_PYTHON_ARGS = Layout(
    "InferenceService", _isvc(lambda w: list(PYTHON), lambda w: ["--model=/mnt/models", *w]), _isvc_gpus, _args,
    ("--model=/mnt/models",), _isvc_pods, _isvc_model, IN_ARGS, ISVC_RESTORED, ISVC_REPLANNED)
ISVC_ARGS = Layout(
    "InferenceService", _isvc(lambda w: None, lambda w: w or None), _isvc_gpus, _args, (), _isvc_pods, _isvc_model,
    IN_ARGS, ISVC_RESTORED, ISVC_REPLANNED)
ISVC_SCRIPT = Layout(
    "InferenceService", _isvc(lambda w: ["bash", "-c", SCRIPT_HEAD + " ".join(w) + "\n"], lambda w: None),
    _isvc_gpus, None, (), _isvc_pods, _isvc_model, IN_COMMAND, ISVC_RESTORED, ISVC_REPLANNED)


def _custom(gpus: int, flags: list[str] | None, annotations: dict[str, str] | None, enabled: str | None) -> Obj:
    """An InferenceService whose predictor is its own container (KServe's defaulter has named it)."""
    obj = isvc(annotations=annotations, enabled=enabled)
    obj["spec"]["predictor"] = {"containers": [{
        "name": "kserve-container", "image": "vllm/vllm-openai:v0.33.0", "command": [*SERVE, *(flags or [])],
        "resources": {"limits": _limits(gpus)}}]}
    return obj


def _custom_container(obj: Obj) -> list[Obj]:
    c = obj["spec"]["predictor"]["containers"][0]
    assert isinstance(c, dict)
    return [c]


def _custom_gpus(obj: Obj, gpus: int) -> None:
    _custom_container(obj)[0]["resources"]["limits"]["nvidia.com/gpu"] = str(gpus)


def _custom_command(obj: Obj) -> list[str]:
    words = _custom_container(obj)[0]["command"]
    assert isinstance(words, list)
    return words


def _custom_pods(obj: Obj, folder: Path) -> list[list[str]]:
    """No runtime is merged into a custom container: the kubelet runs it as it is."""
    return [run_container(_custom_container(obj)[0], stand_in_bin(folder / "bin"), folder)]


ISVC_CUSTOM = Layout(
    "InferenceService", _custom, _custom_gpus, _custom_command, tuple(SERVE), _custom_pods, _custom_container,
    ("/spec/predictor/containers/0/command", "/spec/predictor/containers/0/volumeMounts", "/spec/predictor/volumes",
     RECORD_PATH), ISVC_RESTORED, ISVC_REPLANNED)


# -- LLMInferenceService ------------------------------------------------------------------------------


def _main(pod: Obj) -> Obj:
    c = next(c for c in pod["containers"] if c["name"] == "main")
    assert isinstance(c, dict)
    return c


def _pod_specs(obj: Obj) -> list[Obj]:
    spec = obj["spec"]
    pods = [spec["template"]]
    if "worker" in spec:
        pods.append(spec["worker"])
    if "prefill" in spec:
        pods.append(spec["prefill"]["template"])
    return pods


def _llm_gpus(obj: Obj, gpus: int) -> None:
    for pod in _pod_specs(obj):
        _main(pod)["resources"]["limits"]["nvidia.com/gpu"] = str(gpus)


def _llm_mains(obj: Obj) -> list[Obj]:
    return [_main(pod) for pod in _pod_specs(obj)]


def _llm_args(obj: Obj) -> list[str]:
    words = _main(obj["spec"]["template"])["args"]
    assert isinstance(words, list)
    return words


def _llm_pods(obj: Obj, folder: Path) -> list[list[str]]:
    """Each pod's `main` container after KServe's preset merge and rendering, run with stand-ins: the
    leader, each worker (LeaderWorkerSet index 1 to ep.nodes - 1), the prefill role."""
    pods: list[tuple[str, bool, dict[str, str]]] = [("decode", False, {})]
    if "worker" in obj["spec"]:
        nodes = int(obj["metadata"]["annotations"]["ep.nodes"])
        pods += [("decode", True, {"LWS_WORKER_INDEX": str(i)}) for i in range(1, nodes)]
    if "prefill" in obj["spec"]:
        pods.append(("prefill", False, {}))
    out = []
    for i, (role, worker, env) in enumerate(pods):
        (folder / str(i)).mkdir()
        out.append(run_preset(preset_argv(obj, role, worker), folder / str(i), env))
    return out


def _llm(shape: Callable[[Obj, int], Obj], nodes: int = 1) -> Make:
    """An LLMInferenceService with the flags in `main`'s args, given a shape (roles, workers) and a node count."""
    def make(gpus: int, args: list[str] | None, annotations: dict[str, str] | None, enabled: str | None) -> Obj:
        ann = {**({"ep.nodes": str(nodes)} if nodes > 1 else {}), **(annotations or {})}
        return shape(llmisvc(gpus=str(gpus), args=args, annotations=ann, enabled=enabled), gpus)
    return make


def _llm_owned(*pods: str) -> tuple[str, ...]:
    return (*(f"/spec/{p}{field}" for p in pods for field in ("/volumes", "/containers/0/args")),
            "/spec/parallelism", "/spec/prefill/parallelism", RECORD_PATH)


LLM_RESTORED = "EP is off: restored parallelism and the main containers' args"
LLM_OWNED = _llm_owned("template", "prefill/template", "worker")

LLM_SINGLE = Layout(
    "LLMInferenceService", _llm(lambda o, g: o), _llm_gpus, _llm_args, (), _llm_pods, _llm_mains, LLM_OWNED, LLM_RESTORED,
    ("set spec.parallelism: data=4 dataLocal=4", "replaced --data-parallel-size 8 with 4"))
LLM_PREFILL = Layout(
    "LLMInferenceService", _llm(lambda o, g: with_prefill(o, str(g))), _llm_gpus, _llm_args, (), _llm_pods, _llm_mains, LLM_OWNED,
    LLM_RESTORED, ("set spec.parallelism: data=4 dataLocal=4", "replaced --data-parallel-size 8 with 4",
                   "set spec.prefill.parallelism: data=4 dataLocal=4"))
LLM_MULTI_NODE = Layout(
    "LLMInferenceService", _llm(lambda o, g: multi_node(o, str(g)), nodes=3), _llm_gpus, _llm_args, (), _llm_pods,
    _llm_mains, LLM_OWNED, LLM_RESTORED, ("set spec.parallelism: data=12 dataLocal=4", HYBRID_LB_NOTE), nodes=3)

LAYOUTS = {
    "isvc-command": ISVC_COMMAND,
    "isvc-python-args": ISVC_PYTHON_ARGS,
    "isvc-args": ISVC_ARGS,
    "isvc-script": ISVC_SCRIPT,
    "isvc-custom-container": ISVC_CUSTOM,
    "llmisvc": LLM_SINGLE,
    "llmisvc-prefill-decode": LLM_PREFILL,
    "llmisvc-multi-node": LLM_MULTI_NODE,
}
"""Every layout of every kind that matters, by test id."""
FLAG_LAYOUTS = {name: layout for name, layout in LAYOUTS.items() if layout.flags is not None}


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> Layout:
    """Each layout of each kind in turn."""
    return LAYOUTS[request.param]


@pytest.fixture(params=sorted(FLAG_LAYOUTS))
def flag_layout(request: pytest.FixtureRequest) -> Layout:
    """Each layout whose user flags are a list (every one but the script)."""
    return FLAG_LAYOUTS[request.param]


def test_every_kind_has_a_layout() -> None:
    assert {layout.kind for layout in LAYOUTS.values()} == set(KINDS)
    assert {obj_kind(layout.build()) for layout in LAYOUTS.values()} == set(KINDS)


# -- how the tests see a review --------------------------------------------------------------------------


def obj_kind(obj: Obj) -> str:
    return str(obj["kind"])


def review(obj: Obj, options: Options | None = None) -> tuple[Obj, Verdict]:
    """The object as stored after the webhook (the object itself when denied), and the verdict."""
    verdict = mutate(copy.deepcopy(obj), options)
    return (apply(obj, verdict) if verdict.allowed else obj), verdict


def admitted(obj: Obj, options: Options | None = None) -> tuple[Obj, Verdict]:
    out, verdict = review(obj, options)
    assert verdict.allowed, verdict.message
    return out, verdict


def ep(obj: Obj, value: str | None) -> Obj:
    """The object with ep.enabled set to value (None: removed)."""
    obj = copy.deepcopy(obj)
    annotations = obj["metadata"]["annotations"]
    if value is None:
        annotations.pop("ep.enabled", None)
    else:
        annotations["ep.enabled"] = value
    return obj


def without_switch(obj: Obj) -> Obj:
    return ep(obj, None)


def layouts_of(layout: Layout, obj: Obj, tmp_path: Path) -> list[tuple[bool, int, int]]:
    """(expert parallel, TP, DP) as vLLM parses them in each pod."""
    return [(ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size)
            for ns in layout.launches(obj, tmp_path)]


def ep_layout(layout: Layout, gpus: int = 8, tp: int = 1) -> tuple[bool, int, int]:
    return True, tp, layout.nodes * gpus // tp


def assert_runs_ep(layout: Layout, obj: Obj, tmp_path: Path, gpus: int = 8, tp: int = 1) -> None:
    runs = layouts_of(layout, obj, tmp_path)
    assert runs and all(r == ep_layout(layout, gpus, tp) for r in runs), runs


def assert_runs_without_ep(layout: Layout, obj: Obj, tmp_path: Path) -> None:
    assert all(ns.enable_expert_parallel is False for ns in layout.launches(obj, tmp_path))


def record(obj: Obj) -> Any:
    return json.loads(obj["metadata"]["annotations"][UNDO_RECORD])


# -- ep.enabled --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "TRUE", "True", " true "])
def test_ep_enabled_true_in_any_case_runs_ep_with_dp_from_the_gpus(layout: Layout, value: str, tmp_path: Path) -> None:
    out, _ = admitted(layout.build(enabled=value))
    assert_runs_ep(layout, out, tmp_path)


@pytest.mark.parametrize("value", ["false", "FALSE", None])
def test_disabled_or_missing_annotation_changes_nothing(layout: Layout, value: str | None) -> None:
    verdict = mutate(layout.build(args=["--tensor-parallel-size", "8"], enabled=value))
    assert verdict.allowed and verdict.patch == () and verdict.warnings == ()


@pytest.mark.parametrize("value", ["yes", "1", "", "on", True])
def test_any_other_ep_enabled_value_is_denied_with_the_accepted_values(layout: Layout, value: Any) -> None:
    obj = layout.build()
    obj["metadata"]["annotations"]["ep.enabled"] = value
    verdict = mutate(obj)
    assert not verdict.allowed and "ep.enabled" in verdict.message and '"true" or "false"' in verdict.message


def test_the_tensor_parallel_annotation_sets_tp_and_divides_the_gpus_into_dp(layout: Layout, tmp_path: Path) -> None:
    out, _ = admitted(layout.build(annotations={"ep.tensor-parallel-size": "2"}))
    assert_runs_ep(layout, out, tmp_path, tp=2)


# -- the flags the webhook owns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "replaced"),
    [
        (["--tensor-parallel-size", "8"], ["--tensor-parallel-size", "1"]),
        (["--tensor-parallel-size=8"], ["--tensor-parallel-size=1"]),
        (["--tensor_parallel_size=8"], ["--tensor_parallel_size=1"]),
        (["-tp", "8"], ["-tp", "1"]),
        (["-tp=8"], ["-tp=1"]),
        (["--data-parallel-size", "2"], ["--data-parallel-size", "{dp}"]),
        (["-dp=3"], ["-dp={dp}"]),
        (["--data_parallel_size", "5"], ["--data_parallel_size", "{dp}"]),
    ],
)
def test_conflicting_values_are_replaced_in_place_in_every_spelling(
    flag_layout: Layout, flags: list[str], replaced: list[str], tmp_path: Path
) -> None:
    layout = flag_layout
    out, verdict = admitted(layout.build(args=[*flags, "--port", "8080", "--max-model-len=8192"]))
    assert layout.flags is not None
    start = len(layout.prefix)
    dp = str(ep_layout(layout)[2])
    assert layout.flags(out)[start:start + len(replaced)] == [w.replace("{dp}", dp) for w in replaced]
    assert any(w.startswith(f"replaced {' '.join(flags) if '=' in flags[0] else flags[0]}") for w in verdict.warnings)
    assert_runs_ep(layout, out, tmp_path)
    leader = layout.launches(out, tmp_path)[0]  # the pod whose flags these are
    assert (leader.port, leader.max_model_len) == (8080, 8192)


@pytest.mark.parametrize("negation", ["--no-enable-expert-parallel", "--no_enable_expert_parallel"])
def test_disabling_expert_parallel_is_removed(layout: Layout, negation: str, tmp_path: Path) -> None:
    out, verdict = admitted(layout.build(args=[negation, "--port", "8080"]))
    if layout.flags is not None:
        assert negation not in layout.flags(out)
    assert f"removed {negation}" in verdict.warnings
    assert_runs_ep(layout, out, tmp_path)


def test_the_short_ep_flag_already_present_is_kept_and_not_duplicated(flag_layout: Layout, tmp_path: Path) -> None:
    out, _ = admitted(flag_layout.build(args=["-ep"]))
    assert flag_layout.flags is not None
    flags = flag_layout.flags(out)
    assert flags.count("-ep") == 1 and "--enable-expert-parallel" not in flags
    assert_runs_ep(flag_layout, out, tmp_path)


def test_the_patch_touches_only_the_fields_the_webhook_owns(layout: Layout) -> None:
    for args in (None, ["--max-model-len=4096"], ["-tp", "8", "-dp=2"]):
        verdict = mutate(layout.build(args=args))
        assert verdict.allowed and verdict.patch
        for op in verdict.patch:
            path = str(op["path"])
            assert any(path == p or path.startswith(p + "/") for p in layout.owned), path


# -- undo -------------------------------------------------------------------------------------------------

ARG_SETS = {"none": None, "a-flag": ["--max-model-len=4096"], "conflicts": ["-tp", "8", "-dp=2"],
            "shell-variable": ["--tensor-parallel-size", "${GPU_COUNT}"]}


@pytest.mark.parametrize("how", ["false", "removed"])
@pytest.mark.parametrize("args", sorted(ARG_SETS))
def test_turning_ep_off_restores_the_object_exactly(layout: Layout, args: str, how: str, tmp_path: Path) -> None:
    original = layout.build(args=ARG_SETS[args])
    on, _ = admitted(original)
    assert UNDO_RECORD in on["metadata"]["annotations"]
    assert_runs_ep(layout, on, tmp_path)
    off, verdict = admitted(ep(on, "false" if how == "false" else None))
    assert without_switch(off) == without_switch(original)  # command, args, parallelism, volumes: all of it
    assert UNDO_RECORD not in off["metadata"]["annotations"]
    assert any(w.startswith(layout.restored) for w in verdict.warnings), verdict.warnings
    assert mutate(copy.deepcopy(off)).patch == ()


def test_undo_works_when_the_api_server_returns_keys_in_another_order(layout: Layout) -> None:
    original = layout.build(args=["--max-model-len=4096", "-tp", "8"])
    on, _ = admitted(original)
    stored = json.loads(json.dumps(on, sort_keys=True))  # Go serialises maps with sorted keys
    off, _ = admitted(ep(stored, "false"))
    assert without_switch(off) == without_switch(original)


@pytest.mark.parametrize("bad", ["not json", "[]", '{"container": 1}',
                                 '{"container": "/x", "applied": "y", "command": [1]}'])
def test_a_tampered_undo_record_is_denied_with_a_fix(layout: Layout, bad: str) -> None:
    verdict = mutate(layout.build(annotations={UNDO_RECORD: bad}))
    assert not verdict.allowed and UNDO_RECORD in verdict.message and "remove it" in verdict.message


# -- idempotence --------------------------------------------------------------------------------------------

QUOTED = {"ep.eplb-config": '{"window_size": 10, "communicator": "torch_gloo"}'}  # written shell-quoted, read back as JSON


@pytest.mark.parametrize("annotations", [{}, QUOTED, {"ep.tensor-parallel-size": "2", "ep.eplb": "true"}],
                         ids=["plain", "quoted-json", "tp-and-eplb"])
def test_a_second_review_of_the_mutated_object_changes_nothing(layout: Layout, annotations: dict[str, str]) -> None:
    for args in (None, ["--max-model-len=4096", "-tp", "8"]):
        out, _ = admitted(layout.build(args=args, annotations=annotations))
        again = mutate(copy.deepcopy(out))
        assert again.allowed and again.patch == () and again.warnings == ()


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_a_second_review_of_every_readme_example_changes_nothing(name: str) -> None:
    once, _ = admitted(load_example(name))
    verdict = mutate(copy.deepcopy(once))
    assert verdict.allowed and verdict.patch == () and verdict.warnings == ()


# -- re-planning from the original ----------------------------------------------------------------------------


def _dp_words(argv: list[str]) -> list[str]:
    return [w for w in argv if w.split("=")[0] in ("--data-parallel-size", "--data_parallel_size", "-dp")]


@pytest.mark.parametrize("policy", ["override", "reject"])
def test_a_new_gpu_count_gives_a_new_layout_from_the_original(layout: Layout, policy: str, tmp_path: Path) -> None:
    """Also under onConflict: reject, where the webhook's own flags are not the user's conflict."""
    options = Options(on_conflict=policy)  # type: ignore[arg-type]
    original = layout.build(args=["--max-model-len=4096"])
    on, _ = admitted(original, options)
    layout.gpus_to(on, 4)
    updated, verdict = admitted(on, options)
    assert_runs_ep(layout, updated, tmp_path, gpus=4)
    for argv in layout.argvs(updated, tmp_path):
        assert len(_dp_words(argv)) == 1, argv
    assert verdict.warnings == layout.replanned
    off, _ = admitted(ep(updated, "false"), options)
    expected = copy.deepcopy(original)
    layout.gpus_to(expected, 4)
    assert without_switch(off) == without_switch(expected)


def test_changing_the_tensor_parallel_annotation_recomputes_the_layout(layout: Layout, tmp_path: Path) -> None:
    on, _ = admitted(layout.build(args=["-tp", "8"]))
    on["metadata"]["annotations"]["ep.tensor-parallel-size"] = "4"
    updated, _ = admitted(on)
    assert_runs_ep(layout, updated, tmp_path, tp=4)


# -- hand edits while EP is on ------------------------------------------------------------------------------------


def test_flags_rewritten_after_the_webhook_become_the_new_original(flag_layout: Layout, tmp_path: Path) -> None:
    layout = flag_layout
    assert layout.flags is not None
    on, _ = admitted(layout.build(args=["-tp", "8"]))
    rewritten = [*layout.prefix, "--port", "9000"]
    layout.flags(on)[:] = rewritten  # the webhook's flags are gone with the rest
    again, _ = admitted(on)
    assert_runs_ep(layout, again, tmp_path)
    held = json.dumps(record(again))  # the record holds the rewritten flags as the original
    assert json.dumps(rewritten) in held and json.dumps([*layout.prefix, "-tp", "8"]) not in held
    off, _ = admitted(ep(again, "false"))
    assert layout.flags(off) == rewritten


def test_turning_off_after_a_hand_edit_keeps_the_edit_and_drops_the_record(flag_layout: Layout, tmp_path: Path) -> None:
    layout = flag_layout
    assert layout.flags is not None
    on, _ = admitted(layout.build(args=["-tp", "8"]))
    layout.flags(on).append("--port=1234")  # edited without a review in between
    off, verdict = admitted(ep(on, "false"))
    assert layout.flags(off)[-1] == "--port=1234"
    assert UNDO_RECORD not in off["metadata"]["annotations"]
    assert any("edits made since stay" in w for w in verdict.warnings), verdict.warnings
    assert_runs_without_ep(layout, off, tmp_path)


def test_another_webhook_touching_the_mutated_object_keeps_the_undo_record(flag_layout: Layout) -> None:
    layout = flag_layout
    assert layout.flags is not None
    original = layout.build(args=["-dp=2"])
    on, _ = admitted(original)
    layout.flags(on).append("--max-model-len=4096")  # a second mutating webhook runs after ours
    again, verdict = admitted(on)
    assert layout.flags(again) == layout.flags(on)  # nothing to fix, nothing duplicated
    assert UNDO_RECORD in again["metadata"]["annotations"] and verdict.warnings == ()
    assert mutate(copy.deepcopy(again)).patch == ()
    off, _ = admitted(ep(again, "false"))
    # EP off takes back only the webhook's own change: the other webhook's flag is part of the intent
    assert layout.flags(off) == [*layout.flags(original), "--max-model-len=4096"]


# -- policy modes: enforce, forbid, reject -------------------------------------------------------------------

ENFORCE = Options(mode="enforce", allow_opt_out=False, rule="prod")
FORBID = Options(mode="forbid", rule="no-ep")
REJECT = Options(on_conflict="reject")


def test_enforce_gives_ep_without_the_annotation_and_keeps_it_when_the_annotation_goes(
    layout: Layout, tmp_path: Path
) -> None:
    out, _ = admitted(layout.build(args=["-tp", "8"], enabled=None), ENFORCE)
    assert_runs_ep(layout, out, tmp_path)
    annotated, _ = admitted(layout.build(args=["-tp", "8"]), ENFORCE)
    again = mutate(without_switch(annotated), ENFORCE)
    assert again.allowed and again.patch == ()


def test_enforce_honours_opting_out_only_where_the_rule_allows_it(layout: Layout) -> None:
    obj = layout.build(enabled="false")
    denied = mutate(copy.deepcopy(obj), ENFORCE)
    assert not denied.allowed and "opting out is not allowed" in denied.message and "prod" in denied.message
    allowed = mutate(copy.deepcopy(obj), Options(mode="enforce", allow_opt_out=True, rule="prod"))
    assert allowed.allowed and allowed.patch == ()


def test_enforce_still_denies_an_annotated_object_that_cannot_have_ep(layout: Layout) -> None:
    verdict = mutate(layout.build(gpus=1), ENFORCE)
    assert not verdict.allowed and "at least 2 GPUs" in verdict.message


def test_forbid_denies_the_annotation_naming_the_rule(layout: Layout) -> None:
    verdict = mutate(layout.build(), FORBID)
    assert not verdict.allowed and "forbidden" in verdict.message and "no-ep" in verdict.message


@pytest.mark.parametrize("flag", ["--enable-expert-parallel", "-ep", "--enable_expert_parallel"])
@pytest.mark.parametrize("enabled", [None, "false"])
def test_forbid_denies_hand_written_expert_parallel_flags(layout: Layout, flag: str, enabled: str | None) -> None:
    verdict = mutate(layout.build(args=[flag, "-tp", "1"], enabled=enabled), FORBID)
    assert not verdict.allowed and "forbidden" in verdict.message
    assert flag in verdict.message


def test_forbid_allows_a_plain_object_and_undoes_an_earlier_change(layout: Layout, tmp_path: Path) -> None:
    plain = mutate(layout.build(enabled=None), FORBID)
    assert plain.allowed and plain.patch == ()
    original = layout.build(args=["-tp", "8"])
    on, _ = admitted(original)
    off, _ = admitted(without_switch(on), FORBID)
    assert without_switch(off) == without_switch(original)


@pytest.mark.parametrize("flags", [["--tensor-parallel-size", "8"], ["--data-parallel-size", "2"]])
def test_reject_mode_denies_naming_the_conflicting_flag(layout: Layout, flags: list[str]) -> None:
    verdict = mutate(layout.build(args=flags), REJECT)
    assert not verdict.allowed
    assert " ".join(flags) in verdict.message and "onConflict: reject" in verdict.message


def test_reject_mode_still_adds_missing_flags_when_nothing_conflicts(layout: Layout, tmp_path: Path) -> None:
    out, _ = admitted(layout.build(args=["--tensor-parallel-size", "1"]), REJECT)
    assert_runs_ep(layout, out, tmp_path)


# -- the all2all backend where the release reads it from the env ------------------------------------------

ALL2ALL_ENV = "VLLM_ALL2ALL_BACKEND"


@pytest.mark.parametrize("release", ["0.10.1.1", "0.11.0"])
def test_before_0_11_1_the_backend_goes_into_the_env_of_every_vllm_container_and_undo_restores_it(
    layout: Layout, release: str, tmp_path: Path
) -> None:
    """vLLM before 0.11.1 has no --all2all-backend flag and reads VLLM_ALL2ALL_BACKEND (webhook/core/all2allenv.py);
    tests/core/test_all2all_env.py has the image tags and the env already there."""
    original = layout.build(annotations={"ep.all2all-backend": "deepep_low_latency", "ep.vllm-version": release})
    on, verdict = admitted(original)
    for container in layout.containers(on):
        assert {"name": ALL2ALL_ENV, "value": "deepep_low_latency"} in container["env"]
    for argv in layout.argvs(on, tmp_path):
        assert not any(w.startswith("--all2all") for w in argv), argv
    assert_runs_ep(layout, on, tmp_path)
    assert any(f"set env {ALL2ALL_ENV}=deepep_low_latency" in w and release in w for w in verdict.warnings)
    assert mutate(copy.deepcopy(on)).patch == ()
    off, _ = admitted(ep(on, "false"))
    assert without_switch(off) == without_switch(original)
